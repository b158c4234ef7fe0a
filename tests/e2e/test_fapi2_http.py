"""The FAPI 2.0 Security Profile (`profile: fapi2`, docs/fapi2.md) through the real server over
loopback: one negative test per authorization-server MUST, a positive flow with tokenward's own
requests, and openid-client (Node, panva) doing PAR + private_key_jwt + DPoP against a server
held to fapi2 as a whole.

Two servers: `per_client` runs the baseline profile and holds one client to fapi2 (its other
client is untouched); `server_wide` runs TOKENWARD_PROFILE=fapi2, so clients registered before
(simulated with a baseline registration service) are held to it too. Time is a clock the test
moves, never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import json_encode

from tests.e2e.conftest import CALLBACK, PASSWORD
from tests.e2e.live import free_port, serve_in_thread
from tests.e2e.test_interop_openid_client import NODE_DIR, _node_ready
from tests.oauth.jar_setup import claims_for, new_key, public_jwks, request_object
from tests.pki import Issued, self_signed
from tests.server.flows import hidden_interaction, query_of
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.oauth.client_auth import ASSERTION_TYPE
from tokenward.services.clients import ClientAdmin
from tokenward.services.errors import AdminError
from tokenward.tokens.sealing import generate_master_key

VERIFIER = "fapi2-test-pkce-verifier-" + "v" * 30
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
HEADER = "X-SSL-Client-Cert"  # a trusted proxy's certificate header (docs/mtls.md)
SCOPE = "openid profile read"
LOCALHOST_CALLBACK = "http://localhost:9/callback"  # baseline allows it; fapi2 does not


class SkewClock:
    """Real time plus an offset a test may move (to outlive a code without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Server:
    base: str
    services: Services
    clock: SkewClock
    keys: dict[str, jwk.JWK]
    secrets: dict[str, str]
    certificate: Issued | None = None

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"


def _settings(issuer: str, data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        issuer=issuer,
        master_key=generate_master_key(),
        data_dir=data_dir,
        trusted_proxies="127.0.0.1/32",
        mtls_certificate_header=HEADER,
        **extra,
    )


async def _per_client(issuer: str, data_dir: Path, clock: SkewClock) -> Server:
    services = await build_services(_settings(issuer, data_dir), memory_stores(clock), clock)
    keys = {"fapi-web": new_key(kid="fapi-web-1")}
    await services.client_admin.create_client(
        "fapi-web",
        grant_types=["authorization_code", "refresh_token"],
        scope=SCOPE,
        redirect_uris=[CALLBACK],
        jwks=public_jwks(keys["fapi-web"]),
        skip_consent=True,
        profile="fapi2",
    )
    plain = await services.client_admin.create_client(
        "plain-web",
        grant_types=["authorization_code"],
        scope=SCOPE,
        redirect_uris=[CALLBACK],
        skip_consent=True,
    )
    await services.user_admin.create_user("alice", PASSWORD)
    return Server(issuer, services, clock, keys, {"plain-web": plain["client_secret"]})


async def _server_wide(issuer: str, data_dir: Path, clock: SkewClock) -> Server:
    services = await build_services(
        _settings(issuer, data_dir, profile="fapi2"), memory_stores(clock), clock
    )
    admin = services.client_admin
    keys = {
        "node-app": new_key(kid="node-app-1"),
        "old-rs256": new_key("RSA", kid="old-rs256-1", alg="RS256"),
        "old-localhost": new_key(kid="old-localhost-1"),
        "old-id-token": new_key(kid="old-id-token-1"),
    }
    common: dict[str, Any] = {
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": SCOPE,
        "redirect_uris": [CALLBACK],
        "skip_consent": True,
    }
    await admin.create_client("node-app", jwks=public_jwks(keys["node-app"]), **common)
    # Registered before the deployment went fapi2: a registration service of the baseline
    # profile, on the same store. The profile must still hold them at every request.
    before = ClientAdmin(services.stores.clients, services.hasher, services.watermarks, clock)
    old = await before.create_client("old-secret", **common)
    await before.create_client(
        "old-rs256",
        jwks=public_jwks(keys["old-rs256"]),
        id_token_signed_response_alg="ES256",
        **common,
    )
    await before.create_client(
        "old-localhost",
        jwks=public_jwks(keys["old-localhost"]),
        id_token_signed_response_alg="ES256",
        **{**common, "redirect_uris": [LOCALHOST_CALLBACK]},
    )
    # ES256 keys, but ID tokens registered for RS256 (baseline's default).
    await before.create_client("old-id-token", jwks=public_jwks(keys["old-id-token"]), **common)
    certificate = self_signed(data_dir, "edge", "edge-app")
    for client_id, bound in (("edge-app", True), ("edge-unbound", False)):
        await admin.create_client(
            client_id,
            grant_types=["client_credentials"],
            scope="read",
            redirect_uris=[],
            auth_method="self_signed_tls_client_auth",
            jwks=json.dumps(certificate.jwks()),
            tls_bound_tokens=bound,
        )
    await services.user_admin.create_user("alice", PASSWORD)
    return Server(issuer, services, clock, keys, {"old-secret": old["client_secret"]}, certificate)


def _serve(prepare: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    clock = SkewClock()
    server: Server = asyncio.run(
        prepare(f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("fapi2"), clock)
    )
    try:
        with serve_in_thread(server_app(server.services), port):
            yield server
    finally:
        asyncio.run(server.services.stores.aclose())


@pytest.fixture(scope="module")
def per_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(_per_client, tmp_path_factory)


@pytest.fixture(scope="module")
def server_wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(_server_wide, tmp_path_factory)


# --- the client's side: assertions, DPoP, PAR, sign-in, token requests ---------------------


def assertion(server: Server, client_id: str, **changes: Any) -> dict[str, str]:
    """private_key_jwt (RFC 7523) form fields, `aud` the issuer as a string unless changed."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": server.base,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 300,
        **changes,
    }
    key = server.keys[client_id]
    token = jwt.JWT(header={"alg": key.get("alg"), "kid": key.get("kid")}, claims=claims)
    token.make_signed_token(key)
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token.serialize()}


def _authorization(**changes: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": SCOPE,
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }


def _with_nonce(send: Any, key: DpopKey | None, url: str) -> httpx.Response:
    """One request, again with the server's DPoP nonce when it asks for one (RFC 9449 §8)."""
    response: httpx.Response = send(key.proof("POST", url) if key else None)
    if (
        key is not None
        and response.status_code in (400, 401)
        and response.json().get("error") == "use_dpop_nonce"
    ):
        response = send(key.proof("POST", url, nonce=response.headers["dpop-nonce"]))
    return response


def push(
    server: Server,
    client_id: str,
    data: dict[str, str],
    key: DpopKey | None = None,
    **auth_changes: Any,
) -> httpx.Response:
    url = f"{server.base}/par"

    def send(proof: str | None) -> httpx.Response:
        headers = {"DPoP": proof} if proof else {}
        body = {**data, **assertion(server, client_id, **auth_changes)}
        return httpx.post(url, data=body, headers=headers)

    return _with_nonce(send, key, url)


def token(
    server: Server,
    client_id: str,
    data: dict[str, str],
    key: DpopKey | None = None,
    **auth_changes: Any,
) -> httpx.Response:
    def send(proof: str | None) -> httpx.Response:
        headers = {"DPoP": proof} if proof else {}
        body = {**data, **assertion(server, client_id, **auth_changes)}
        return httpx.post(server.token_url, data=body, headers=headers)

    return _with_nonce(send, key, server.token_url)


def sign_in(server: Server, link: str) -> httpx.Response:
    """The browser: the link, the sign-in form, and the redirect back to the client."""
    with httpx.Client() as browser:
        page = browser.get(link)
        assert page.status_code == 200, page.text[:300]
        return browser.post(
            f"{server.base}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "alice",
                "password": PASSWORD,
            },
        )


def authorize_link(server: Server, client_id: str, request_uri: str) -> str:
    return f"{server.base}/authorize?" + urlencode(
        {"client_id": client_id, "request_uri": request_uri}
    )


def code_for(
    server: Server, client_id: str, key: DpopKey, **changes: str
) -> tuple[httpx.Response, dict[str, str]]:
    """A pushed (DPoP-bound) request, signed in: the callback response and its query."""
    pushed = push(server, client_id, _authorization(**changes), key)
    assert pushed.status_code == 201, pushed.text
    back = sign_in(server, authorize_link(server, client_id, pushed.json()["request_uri"]))
    return back, query_of(back.headers["location"])


def redeem(server: Server, client_id: str, code: str, key: DpopKey | None) -> httpx.Response:
    grant = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
    }
    return token(server, client_id, grant, key)


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


# --- the positive flows -------------------------------------------------------------------


def test_a_fapi2_flow_par_private_key_jwt_dpop_303_iss(per_client: Server) -> None:
    """PAR + private_key_jwt + DPoP: 303 back to the client with `iss` (RFC 9207), the code
    redeemed for DPoP-bound tokens, a 64-character nonce carried into the ID token."""
    key = DpopKey()
    nonce = "n" * 64
    back, query = code_for(per_client, "fapi-web", key, nonce=nonce)

    assert back.status_code == 303
    assert query["iss"] == per_client.base
    assert query["state"] == "st-1"
    tokens = redeem(per_client, "fapi-web", query["code"], key)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "DPoP"
    claims = _payload(body["id_token"])
    assert claims["nonce"] == nonce
    header = _payload(body["id_token"], 0)
    assert header["alg"] == "ES256"  # the fapi2 default, never RS256
    access = _payload(body["access_token"])
    assert access["cnf"] == {"jkt": key.thumbprint}


def test_a_baseline_client_beside_it_is_untouched(per_client: Server) -> None:
    """The per-client profile holds that client only: a baseline client keeps its secret,
    plain links, 302 and bearer tokens."""
    link = f"{per_client.base}/authorize?" + urlencode(
        {"client_id": "plain-web", **_authorization()}
    )
    back = sign_in(per_client, link)
    assert back.status_code == 302
    code = query_of(back.headers["location"])["code"]
    tokens = httpx.post(
        per_client.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": VERIFIER,
        },
        auth=("plain-web", per_client.secrets["plain-web"]),
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["token_type"] == "Bearer"


def test_openid_client_par_private_key_jwt_dpop_under_fapi2(server_wide: Server) -> None:
    """panva's openid-client (oauth4webapi) against a server held to fapi2 as a whole: a signed
    request object pushed with private_key_jwt and DPoP, the code redeemed with DPoP."""
    _node_ready()
    private = server_wide.keys["node-app"].export_private(as_dict=True)
    with subprocess.Popen(
        [
            "node",
            str(NODE_DIR / "par_jar.mjs"),
            server_wide.base,
            "node-app",
            CALLBACK,
            json.dumps(private),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert "authorize" in first, first
        back = sign_in(server_wide, first["authorize"])
        assert back.status_code == 303
        process.stdin.write(back.headers["location"] + "\n")
        process.stdin.flush()
        outcome = json.loads(process.stdout.readline())
        process.stdin.close()
        process.wait(timeout=30)
    assert "result" in outcome, outcome
    assert outcome["result"]["token_type"] == "dpop"
    assert outcome["result"]["authorize_params"] == ["client_id", "request_uri"]
    assert outcome["result"]["userinfo_username"] == "alice"


def test_the_metadata_of_a_fapi2_server_offers_only_what_fapi2_allows(
    server_wide: Server,
) -> None:
    meta = httpx.get(f"{server_wide.base}/.well-known/openid-configuration").json()

    assert meta["require_pushed_authorization_requests"] is True
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["token_endpoint_auth_methods_supported"]) <= {
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    }
    for name in (
        "token_endpoint_auth_signing_alg_values_supported",
        "request_object_signing_alg_values_supported",
        "dpop_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
    ):
        assert set(meta[name]) <= {"PS256", "ES256", "EdDSA"}, name
        assert meta[name], name


# --- one negative test per MUST -------------------------------------------------------------


def test_must_par_a_plain_link_is_refused_with_303_and_iss(per_client: Server) -> None:
    link = f"{per_client.base}/authorize?" + urlencode(
        {"client_id": "fapi-web", **_authorization()}
    )
    refused = httpx.get(link)

    assert refused.status_code == 303
    query = query_of(refused.headers["location"])
    assert (query["error"], query["iss"], query["state"]) == (
        "invalid_request",
        per_client.base,
        "st-1",
    )


def test_must_par_client_authenticated(per_client: Server, server_wide: Server) -> None:
    anonymous = httpx.post(f"{per_client.base}/par", data={"client_id": "fapi-web"})
    secret = httpx.post(
        f"{server_wide.base}/par",
        data=_authorization(),
        auth=("old-secret", server_wide.secrets["old-secret"]),
    )

    assert _error(anonymous) == (401, "invalid_client")
    assert _error(secret) == (401, "invalid_client")  # a secret is not enough under fapi2


def test_must_par_carries_the_redirect_uri(per_client: Server) -> None:
    request = _authorization()
    del request["redirect_uri"]  # the client has one registered: baseline would default to it

    refused = push(per_client, "fapi-web", request)

    assert _error(refused) == (400, "invalid_request")
    assert "redirect_uri" in refused.json()["error_description"]


def test_must_response_type_code_only(per_client: Server) -> None:
    for response_type in ("token", "code id_token"):
        refused = push(per_client, "fapi-web", _authorization(response_type=response_type))
        assert _error(refused) == (400, "unsupported_response_type")


def test_must_pkce_s256_plain_and_missing_are_refused(per_client: Server) -> None:
    plain = push(
        per_client,
        "fapi-web",
        _authorization(code_challenge=VERIFIER, code_challenge_method="plain"),
    )
    missing = _authorization()
    del missing["code_challenge"], missing["code_challenge_method"]

    assert _error(plain) == (400, "invalid_request")
    assert _error(push(per_client, "fapi-web", missing)) == (400, "invalid_request")


def test_must_sender_constrained_an_unbound_token_is_never_issued(
    per_client: Server, server_wide: Server
) -> None:
    """No DPoP proof and no bound certificate: refused before the code is spent."""
    key = DpopKey()
    _back, query = code_for(per_client, "fapi-web", key)
    unbound = redeem(per_client, "fapi-web", query["code"], None)
    bound = redeem(per_client, "fapi-web", query["code"], key)
    unbound_service = httpx.post(
        server_wide.token_url,
        data={"grant_type": "client_credentials", "client_id": "edge-unbound"},
        headers={HEADER: quote(_certificate(server_wide).pem, safe="")},
    )

    assert _error(unbound) == (400, "invalid_request")
    assert "sender-constrained" in unbound.json()["error_description"]
    assert bound.status_code == 200, bound.text  # the refusal did not spend the code
    assert _error(unbound_service) == (400, "invalid_request")


def test_mtls_bound_tokens_satisfy_fapi2(server_wide: Server) -> None:
    """The other sender constraint: self_signed_tls_client_auth with certificate-bound tokens
    (RFC 8705), no DPoP."""
    bound = httpx.post(
        server_wide.token_url,
        data={"grant_type": "client_credentials", "client_id": "edge-app"},
        headers={HEADER: quote(_certificate(server_wide).pem, safe="")},
    )

    assert bound.status_code == 200, bound.text
    claims = _payload(bound.json()["access_token"])
    assert set(claims["cnf"]) == {"x5t#S256"}


def test_must_client_auth_a_secret_client_is_refused_at_the_token_endpoint(
    server_wide: Server,
) -> None:
    refused = httpx.post(
        server_wide.token_url,
        data={"grant_type": "authorization_code", "code": "x" * 43},
        auth=("old-secret", server_wide.secrets["old-secret"]),
    )

    assert _error(refused) == (401, "invalid_client")


@pytest.mark.parametrize(
    "aud",
    ["{base}/token", "{base}/par", ["{base}"], "https://elsewhere.example"],
    ids=["token-endpoint", "par-endpoint", "issuer-in-an-array", "another-server"],
)
def test_must_assertion_audience_is_the_issuer_as_a_string(
    per_client: Server, aud: str | list[str]
) -> None:
    audience: str | list[str] = (
        [item.format(base=per_client.base) for item in aud]
        if isinstance(aud, list)
        else aud.format(base=per_client.base)
    )

    refused = push(per_client, "fapi-web", _authorization(), aud=audience)

    assert _error(refused) == (401, "invalid_client")


def test_must_algorithms_rs256_is_refused_for_assertions_objects_and_proofs(
    server_wide: Server,
) -> None:
    """A client key registered for RS256 before the deployment went fapi2 verifies nothing."""
    rs256_key = server_wide.keys["old-rs256"]
    by_assertion = push(server_wide, "old-rs256", _authorization())
    claims = claims_for("node-app", server_wide.base, **_authorization())
    node_key = server_wide.keys["node-app"]
    rsa = new_key("RSA", kid=node_key.get("kid"), alg="RS256")  # not registered either way
    by_object = push(server_wide, "node-app", {"request": request_object(rsa, claims)})
    proof = _rs256_proof(server_wide.token_url)
    by_proof = httpx.post(
        server_wide.token_url,
        data={"grant_type": "authorization_code", "code": "x" * 43, "code_verifier": VERIFIER,
              **assertion(server_wide, "node-app")},
        headers={"DPoP": proof},
    )  # fmt: skip

    rs256_id_tokens = push(server_wide, "old-id-token", _authorization())
    at_push = _rs256_push(server_wide)

    assert rs256_key.get("alg") == "RS256"
    assert _error(rs256_id_tokens) == (401, "invalid_client")
    assert "RS256" in rs256_id_tokens.json()["error_description"]
    assert _error(at_push) == (400, "invalid_dpop_proof")
    assert _error(by_assertion) == (401, "invalid_client")
    assert "RS256" in by_assertion.json()["error_description"]
    assert _error(by_object) == (400, "invalid_request_object")
    assert by_proof.status_code in (400, 401)
    assert by_proof.json()["error"] in ("invalid_dpop_proof", "use_dpop_nonce")
    if by_proof.json()["error"] == "use_dpop_nonce":  # once more, with the nonce
        again = httpx.post(
            server_wide.token_url,
            data={"grant_type": "authorization_code", "code": "x" * 43,
                  "code_verifier": VERIFIER, **assertion(server_wide, "node-app")},
            headers={"DPoP": _rs256_proof(server_wide.token_url, by_proof.headers["dpop-nonce"])},
        )  # fmt: skip
        assert _error(again) == (400, "invalid_dpop_proof")
        assert "RS256" in again.json()["error_description"]


def test_must_rsa_2048_and_algorithms_at_registration(per_client: Server) -> None:
    admin = per_client.services.client_admin
    weak = jwk.JWK.generate(kty="RSA", size=1024, kid="weak", alg="PS256")
    rs256 = new_key("RSA", kid="rs", alg="RS256")
    ps256 = new_key("RSA", kid="ps", alg="PS256")
    common: dict[str, Any] = {
        "grant_types": ["authorization_code"],
        "scope": "read",
        "redirect_uris": ["https://bank.example/cb"],
        "profile": "fapi2",
    }

    async def register(client_id: str, **extra: Any) -> str:
        try:
            await admin.create_client(client_id, **{**common, **extra})
        except AdminError as exc:  # the message is what the operator reads
            return str(exc)
        return "registered"

    outcomes = asyncio.run(_gather(
        register("weak", jwks=public_jwks(weak)),
        register("rs256", jwks=public_jwks(rs256)),
        register("ps256", jwks=public_jwks(ps256)),
        register("secret", auth_method="client_secret_basic", jwks=public_jwks(ps256)),
        register("localhost", jwks=public_jwks(ps256), redirect_uris=["http://localhost/cb"]),
    ))  # fmt: skip

    assert "2048" in outcomes[0]
    assert "RS256" in outcomes[1]
    assert outcomes[2] == "registered"
    assert "auth methods" in outcomes[3]
    assert "127.0.0.1" in outcomes[4]


async def _gather(*steps: Any) -> list[str]:
    return [await step for step in steps]  # one after the other: one store, one loop


def test_must_code_lifetime_60_s_a_code_used_at_61_s_is_refused(per_client: Server) -> None:
    key = DpopKey()
    _back, late = code_for(per_client, "fapi-web", key)
    _back, in_time = code_for(per_client, "fapi-web", key)
    per_client.clock.offset = 61.0
    try:
        refused = redeem(per_client, "fapi-web", late["code"], key)
    finally:
        per_client.clock.offset = 0.0
    per_client.clock.offset = 59.0
    try:
        accepted = redeem(per_client, "fapi-web", in_time["code"], key)
    finally:
        per_client.clock.offset = 0.0

    assert _error(refused) == (400, "invalid_grant")
    assert "expired" in refused.json()["error_description"]
    assert accepted.status_code == 200, accepted.text


def test_must_iat_nbf_10_s_ahead_accepted_61_s_refused(per_client: Server) -> None:
    now = int(time.time())
    ahead = push(per_client, "fapi-web", _authorization(), iat=now + 10, nbf=now + 10)
    too_far_iat = push(per_client, "fapi-web", _authorization(), iat=now + 61)
    too_far_nbf = push(per_client, "fapi-web", _authorization(), nbf=now + 61)
    key = per_client.keys["fapi-web"]
    future_object = claims_for("fapi-web", per_client.base, **_authorization())
    future_object["nbf"] = now + 61
    by_object = push(per_client, "fapi-web", {"request": request_object(key, future_object)})

    assert ahead.status_code == 201, ahead.text
    assert _error(too_far_iat) == (401, "invalid_client")
    assert _error(too_far_nbf) == (401, "invalid_client")
    assert _error(by_object) == (400, "invalid_request_object")


def test_must_http_redirect_uris_only_native_loopback(server_wide: Server) -> None:
    """Registration refuses them (test_must_rsa_2048_and_algorithms_at_registration and
    tests/test_cli.py); one registered before the deployment went fapi2 is refused at use."""
    refused = push(server_wide, "old-localhost", _authorization(redirect_uri=LOCALHOST_CALLBACK))

    assert _error(refused) == (400, "invalid_request")
    assert "127.0.0.1" in refused.json()["error_description"]


def test_must_refresh_tokens_are_not_rotated_but_bound(per_client: Server) -> None:
    key = DpopKey()
    _back, query = code_for(per_client, "fapi-web", key)
    first = redeem(per_client, "fapi-web", query["code"], key).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}

    once = token(per_client, "fapi-web", refresh, key)
    twice = token(per_client, "fapi-web", refresh, key)
    without_key = token(per_client, "fapi-web", refresh, None)
    other_key = token(per_client, "fapi-web", refresh, DpopKey())

    assert once.status_code == 200, once.text
    assert once.json()["refresh_token"] == first["refresh_token"]  # not rotated
    assert twice.status_code == 200, twice.text  # using it again is no reuse
    assert _error(without_key) == (400, "invalid_request")  # sender-constrained
    assert _error(other_key) == (400, "invalid_grant")  # bound to the DPoP key


def test_must_no_cors_on_authorize(per_client: Server) -> None:
    origin = {"Origin": "https://attacker.example"}
    link = f"{per_client.base}/authorize?client_id=fapi-web"
    got = httpx.get(link, headers=origin)
    preflight = httpx.options(link, headers={**origin, "Access-Control-Request-Method": "GET"})

    for response in (got, preflight):
        assert not any(name.startswith("access-control-") for name in response.headers)


# --- helpers ------------------------------------------------------------------------------


def _certificate(server: Server) -> Issued:
    assert server.certificate is not None
    return server.certificate


def _rs256_push(server: Server) -> httpx.Response:
    """A push with an RS256 DPoP proof, retried with the server's nonce."""
    url = f"{server.base}/par"

    def send(nonce: str | None) -> httpx.Response:
        return httpx.post(
            url,
            data={**_authorization(), **assertion(server, "node-app")},
            headers={"DPoP": _rs256_proof(url, nonce)},
        )

    first = send(None)
    if first.status_code == 400 and first.json()["error"] == "use_dpop_nonce":
        return send(first.headers["dpop-nonce"])
    return first


def _rs256_proof(url: str, nonce: str | None = None) -> str:
    """A DPoP proof (RFC 9449 §4.2) signed with RS256, which FAPI 2.0 does not allow."""
    key = jwk.JWK.generate(kty="RSA", size=2048)
    claims = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": url, "iat": int(time.time())}
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": "RS256", "jwk": key.export_public(as_dict=True)}
    proof = jws.JWS(json.dumps(claims).encode())
    proof.add_signature(key, None, json_encode(header))
    return str(proof.serialize(compact=True))


def _payload(token: str, part: int = 1) -> dict[str, Any]:
    """A JWT's payload (or header, part 0), unverified: what the test inspects was issued by
    the server under test and is verified by the clients elsewhere."""
    segment = token.split(".")[part]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded
