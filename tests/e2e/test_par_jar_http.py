"""PAR (RFC 9126), JAR (RFC 9101) and DPoP at push (RFC 9449 §10.1) through the real server over
loopback, judged by third-party clients: openid-client/oauth4webapi in Node (PAR + JAR + DPoP,
private_key_jwt) and requests-oauth2client (PAR + DPoP); then each refusal over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import requests_oauth2client as roc
from jwcrypto import jwk

from tests.e2e.conftest import CALLBACK, PASSWORD
from tests.e2e.live import free_port, run_on_server, serve_in_thread
from tests.e2e.test_interop_openid_client import NODE_DIR, _node_ready
from tests.oauth.jar_setup import claims_for, new_key, public_jwks, request_object
from tests.server.flows import hidden_interaction, query_of
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores, open_stores
from tokenward.tokens.sealing import generate_master_key

VERIFIER = "bench-and-test-pkce-verifier-" + "v" * 20
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


class SkewClock:
    """Real time plus an offset a test may move (to outlive a request_uri without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Server:
    base: str
    services: Services
    clock: SkewClock
    secrets: dict[str, str]
    keys: dict[str, jwk.JWK]


async def _prepare(issuer: str, backend: str, data_dir: Path, clock: SkewClock) -> Server:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), data_dir=data_dir)
    stores = memory_stores(clock) if backend == "memory" else await open_stores(settings, clock)
    services = await build_services(settings, stores, clock)
    admin = services.client_admin
    keys = {name: new_key(kid=f"{name}-1") for name in ("par-web", "jar-web", "node-app")}
    secrets: dict[str, str] = {}
    common: dict[str, Any] = {
        "grant_types": ["authorization_code"],
        "scope": "openid profile read",
        "redirect_uris": [CALLBACK],
    }
    extras: dict[str, dict[str, Any]] = {
        "par-web": {"require_par": True},
        "jar-web": {"require_signed_request_object": True},
        "other": {},
    }
    for client_id, extra in extras.items():
        key_set = public_jwks(keys[client_id]) if client_id in keys else None
        created = await admin.create_client(
            client_id, auth_method="client_secret_basic", jwks=key_set, **common, **extra
        )
        secrets[client_id] = created["client_secret"]
    await admin.create_client(
        "node-app",
        jwks=public_jwks(keys["node-app"]),  # private_key_jwt: the default with keys
        require_par=True,
        require_signed_request_object=True,
        **common,
    )
    await services.user_admin.create_user("alice", PASSWORD)
    await stores.aclose()  # pooled SQL connections belong to this loop; the server opens its own
    return Server(issuer, services, clock, secrets, keys)


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = free_port()
    clock = SkewClock()
    prepared = asyncio.run(
        _prepare(f"http://127.0.0.1:{port}", request.param, tmp_path_factory.mktemp("tw"), clock)
    )
    try:
        with serve_in_thread(server_app(prepared.services), port):
            yield prepared
    finally:
        asyncio.run(prepared.services.stores.aclose())


def _request(**changes: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid read",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }


def _push(server: Server, client_id: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.base}/par", data=data, auth=(client_id, server.secrets[client_id]))


def _sign_in(browser: httpx.Client, server: Server, page: httpx.Response) -> httpx.Response:
    assert page.status_code == 200, page.text[:300]
    done = browser.post(
        f"{server.base}/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    if done.status_code == 200:  # consent
        done = browser.post(
            f"{server.base}/consent",
            data={"interaction": hidden_interaction(done.text), "decision": "approve"},
        )
    assert done.status_code == 302, done.text[:300]
    return done


def _authorize(server: Server, params: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.base}/authorize?{urlencode(params)}")


def test_metadata_announces_par_and_jar(server: Server) -> None:
    meta = httpx.get(f"{server.base}/.well-known/openid-configuration").json()

    assert meta["pushed_authorization_request_endpoint"] == f"{server.base}/par"
    assert meta["require_pushed_authorization_requests"] is False  # per client here
    assert meta["request_parameter_supported"] is True
    assert meta["request_uri_parameter_supported"] is False  # only ours, from /par
    assert {"ES256", "PS256", "EdDSA"} <= set(meta["request_object_signing_alg_values_supported"])
    assert "none" not in meta["request_object_signing_alg_values_supported"]


def test_openid_client_par_jar_dpop(server: Server) -> None:
    _node_ready()
    private = server.keys["node-app"].export_private(as_dict=True)
    with subprocess.Popen(
        [
            "node",
            str(NODE_DIR / "par_jar.mjs"),
            server.base,
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
        with httpx.Client() as browser:
            callback = _sign_in(browser, server, browser.get(first["authorize"]))
        process.stdin.write(callback.headers["location"] + "\n")
        process.stdin.flush()
        outcome = json.loads(process.stdout.readline())
        process.stdin.close()
        process.wait(timeout=30)
    assert "result" in outcome, outcome
    user = run_on_server(server.base, server.services.stores.users.by_username("alice"))
    assert user is not None
    assert outcome["result"] == {
        "par_endpoint": f"{server.base}/par",
        "authorize_params": ["client_id", "request_uri"],  # nothing else in the browser
        "token_type": "dpop",
        "sub": user.user_id,
        "userinfo_username": "alice",
    }


def test_requests_oauth2client_par_with_dpop(server: Server) -> None:
    client = roc.OAuth2Client.from_discovery_endpoint(
        issuer=server.base,
        auth=roc.ClientSecretBasic("par-web", server.secrets["par-web"]),
        redirect_uri=CALLBACK,
        testing=True,  # loopback http
        dpop_bound_access_tokens=True,
    )
    # No openid: requests-oauth2client 1.8 loses the DPoP key when it validates an ID token
    # (DPoPToken rebuilt without `_dpop_key`, tokens.py validate_id_token); openid-client above
    # covers ID tokens through PAR.
    authorization = client.authorization_request(scope="read")
    pushed = client.pushed_authorization_request(authorization)
    assert pushed.request_uri.startswith("urn:ietf:params:oauth:request_uri:")
    assert pushed.expires_at is not None
    assert 0 < pushed.expires_at.timestamp() - time.time() < 600
    assert pushed.dpop_key is authorization.dpop_key  # the DPoP proof went with the push

    with httpx.Client() as browser:
        callback = _sign_in(browser, server, browser.get(pushed.uri))
    response = authorization.validate_callback(callback.headers["location"])
    token = client.authorization_code(response)

    assert isinstance(token, roc.DPoPToken)
    assert token.token_type.lower() == "dpop"
    introspected = httpx.post(
        f"{server.base}/introspect",
        data={"token": token.access_token},
        auth=("par-web", server.secrets["par-web"]),
    ).json()
    assert introspected["active"] is True
    assert authorization.dpop_key is not None
    assert introspected["cnf"] == {"jkt": authorization.dpop_key.dpop_jkt}


def test_a_request_uri_is_used_once(server: Server) -> None:
    uri = _push(server, "par-web", _request()).json()["request_uri"]

    first = _authorize(server, {"client_id": "par-web", "request_uri": uri})
    again = _authorize(server, {"client_id": "par-web", "request_uri": uri})

    assert first.status_code == 200  # the sign-in page
    assert again.status_code == 400
    assert "already used" in again.text


def test_an_expired_request_uri_is_refused(server: Server) -> None:
    pushed = _push(server, "par-web", _request())
    assert pushed.status_code == 201
    assert pushed.headers["cache-control"] == "no-store"
    assert 60 <= pushed.json()["expires_in"] <= 90
    server.clock.offset = 61.0
    try:
        late = _authorize(
            server, {"client_id": "par-web", "request_uri": pushed.json()["request_uri"]}
        )
    finally:
        server.clock.offset = 0.0
    assert late.status_code == 400
    assert "expired" in late.text


def test_another_clients_request_uri_is_refused(server: Server) -> None:
    uri = _push(server, "par-web", _request()).json()["request_uri"]

    stolen = _authorize(server, {"client_id": "other", "request_uri": uri})
    own = _authorize(server, {"client_id": "par-web", "request_uri": uri})

    assert stolen.status_code == 400
    assert own.status_code == 200  # the theft did not spend it


def test_a_client_held_to_par_cannot_skip_it(server: Server) -> None:
    refused = _authorize(server, {"client_id": "par-web", **_request()})

    assert refused.status_code == 302
    query = query_of(refused.headers["location"])
    assert query["error"] == "invalid_request"
    assert query["iss"] == server.base
    assert query["state"] == "st-1"


def test_the_push_checks_the_redirect_uri_and_the_client(server: Server) -> None:
    evil = _push(server, "par-web", _request(redirect_uri="https://evil.example/cb"))
    unauthenticated = httpx.post(f"{server.base}/par", data={"client_id": "par-web", **_request()})
    wrong_secret = httpx.post(f"{server.base}/par", data=_request(), auth=("par-web", "x" * 43))

    assert (evil.status_code, evil.json()["error"]) == (400, "invalid_request")
    assert (unauthenticated.status_code, unauthenticated.json()["error"]) == (401, "invalid_client")
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")


def test_a_signed_only_client_sends_signed_objects(server: Server) -> None:
    key = server.keys["jar-web"]
    claims = claims_for("jar-web", server.base, **_request())

    plain_push = _push(server, "jar-web", _request())
    plain_link = _authorize(server, {"client_id": "jar-web", **_request()})
    signed_link = _authorize(
        server, {"client_id": "jar-web", "request": request_object(key, claims)}
    )

    assert (plain_push.status_code, plain_push.json()["error"]) == (400, "invalid_request")
    assert query_of(plain_link.headers["location"])["error"] == "invalid_request"
    assert signed_link.status_code == 200  # the sign-in page


@pytest.mark.parametrize(
    ("change", "forge"),
    [
        ({"aud": "https://elsewhere.example"}, None),
        ({}, "unsigned"),
        ({}, "another key"),
        ({"exp": int(time.time()) - 120}, None),
    ],
    ids=["wrong-aud", "alg-none", "not-the-clients-key", "expired"],
)
def test_bad_request_objects_are_refused_at_push(
    server: Server, change: dict[str, Any], forge: str | None
) -> None:
    claims = {**claims_for("jar-web", server.base, **_request()), **change}
    if forge == "unsigned":
        token = _unsigned(claims)
    else:
        key = new_key(kid="jar-web-1") if forge == "another key" else server.keys["jar-web"]
        token = request_object(key, claims)

    refused = _push(server, "jar-web", {"request": token})

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request_object"


def test_a_request_object_without_iss_aud_and_typ_is_refused(server: Server) -> None:
    """requests-oauth2client 1.8 signs only the request's parameters (no iss, aud, jti, typ),
    and cannot push a signed request: RFC 9101 §10.8 and FAPI want those claims, so its object
    is refused, at /par and in the browser's link, not half-trusted."""
    client = roc.OAuth2Client.from_discovery_endpoint(
        issuer=server.base,
        auth=roc.ClientSecretBasic("jar-web", server.secrets["jar-web"]),
        redirect_uri=CALLBACK,
        testing=True,
    )
    signed = client.authorization_request(scope="openid read").sign(
        server.keys["jar-web"].export_private(as_dict=True), lifetime=60
    )

    pushed = _push(server, "jar-web", {"request": str(signed.request)})
    linked = httpx.get(signed.uri)

    assert (pushed.status_code, pushed.json()["error"]) == (400, "invalid_request_object")
    assert query_of(linked.headers["location"])["error"] == "invalid_request_object"


def _unsigned(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'oauth-authz-req+jwt'})}.{segment(claims)}."


def test_the_dpop_bound_code_needs_the_proof_key(server: Server) -> None:
    """A DPoP header at push binds the code (RFC 9449 §10.1): exchanged without a proof of that
    key, it is refused."""
    key = DpopKey()
    par_url = f"{server.base}/par"
    first = httpx.post(
        par_url,
        data=_request(),
        auth=("par-web", server.secrets["par-web"]),
        headers={"dpop": key.proof("POST", par_url)},
    )
    nonce = first.headers.get("dpop-nonce")
    pushed = httpx.post(
        par_url,
        data=_request(),
        auth=("par-web", server.secrets["par-web"]),
        headers={"dpop": key.proof("POST", par_url, nonce=nonce)},
    )
    assert pushed.status_code == 201, pushed.text
    with httpx.Client() as browser:
        page = browser.get(
            f"{server.base}/authorize?"
            + urlencode({"client_id": "par-web", "request_uri": pushed.json()["request_uri"]})
        )
        callback = _sign_in(browser, server, page)
    code = query_of(callback.headers["location"])["code"]

    unbound = httpx.post(
        f"{server.base}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": VERIFIER,
        },
        auth=("par-web", server.secrets["par-web"]),
    )

    assert unbound.status_code == 400
    assert unbound.json()["error"] == "invalid_grant"
    assert "DPoP key" in unbound.json()["error_description"]
