"""Token exchange (RFC 8693) through the token endpoint of a server on memory stores and a frozen
clock (ASGI): delegation chains, impersonation, down-scoping, revocation down the chain, and
every refusal of §2.2.2. The trusted issuer's JWKS is fetched over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from tests.conftest import FrozenClock
from tests.oauth.exchange_setup import (
    ACCESS,
    C_API,
    D_API,
    EXCHANGE,
    ID_TOKEN,
    JWT,
    PASSWORD,
    ForeignIssuer,
    register_exchange_clients,
    serve_jwks,
)
from tests.pki import Issued, Pki
from tests.server.flows import REDIRECT_URI, Pkce, sign_in_and_consent
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings, TrustedIssuerSetting
from tokenward.core.proxies import parse_networks
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.guard import InvalidToken
from tokenward.serving.tls import ProxyCertificateMiddleware
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
ISSUER = "https://as.example"


@dataclass
class Exchange:
    services: Services
    http: httpx.AsyncClient
    secrets: dict[str, str]
    partner: ForeignIssuer
    clock: FrozenClock

    async def post(self, client: str, **params: str) -> httpx.Response:
        return await self.http.post(
            "/token",
            data={"grant_type": EXCHANGE, **params},
            auth=(client, self.secrets.get(client, "")),
        )

    async def exchange(self, client: str, subject: str, **params: str) -> dict[str, Any]:
        response = await self.post(
            client, subject_token=subject, subject_token_type=ACCESS, **params
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def sign_in(self) -> dict[str, str]:
        pkce = Pkce.new()
        code = (await sign_in_and_consent(self.http, pkce, password=PASSWORD))["code"]
        response = await self.http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce.verifier,
            },
            auth=("web", self.secrets["web"]),
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, str] = response.json()
        return tokens

    async def introspect(self, token: str) -> dict[str, Any]:
        response = await self.http.post(
            "/introspect", data={"token": token}, auth=("svc-b", self.secrets["svc-b"])
        )
        body: dict[str, Any] = response.json()
        return body


def claims(token: str) -> dict[str, Any]:
    """The payload, unverified: for looking only (the e2e test verifies with PyJWT)."""
    segment = token.split(".")[1]
    payload: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return payload


@pytest.fixture
def partner() -> ForeignIssuer:
    return ForeignIssuer()


@pytest.fixture
def partner_jwks(partner: ForeignIssuer) -> Iterator[str]:
    with serve_jwks(partner.jwks) as url:
        yield url


PINNED = "https://pinned.partner.example"  # trusted for RS256 only; its key is ES256


@pytest.fixture
def pinned() -> ForeignIssuer:
    return ForeignIssuer(PINNED)


@pytest.fixture
def pinned_jwks(pinned: ForeignIssuer) -> Iterator[str]:
    with serve_jwks(pinned.jwks) as url:
        yield url


@pytest.fixture
async def ex(
    clock: FrozenClock, partner: ForeignIssuer, partner_jwks: str, pinned_jwks: str
) -> AsyncIterator[Exchange]:
    settings = Settings(
        issuer=ISSUER,
        master_key=generate_master_key(),
        exchange_trusted_issuers=[
            TrustedIssuerSetting(issuer=partner.issuer, jwks_uri=partner_jwks, algorithm="ES256"),
            TrustedIssuerSetting(issuer=PINNED, jwks_uri=pinned_jwks, algorithm="RS256"),
        ],
    )
    services = await build_services(settings, memory_stores(clock), clock)
    secrets = await register_exchange_clients(services, REDIRECT_URI)
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Exchange(services, http, secrets, partner, clock)


async def test_a_chain_narrows_at_each_hop_and_nests_act(ex: Exchange) -> None:
    first = await ex.sign_in()
    a = first["access_token"]
    b = await ex.exchange("svc-b", a, scope="read", audience=C_API)
    assert b["issued_token_type"] == ACCESS  # §2.2.1
    assert b["token_type"] == "Bearer"
    assert b["scope"] == "read"
    assert "refresh_token" not in b  # no refresh token for an exchange
    b_claims = claims(b["access_token"])
    assert b_claims["sub"] == claims(a)["sub"]
    assert b_claims["aud"] == C_API
    assert b_claims["act"] == {"sub": "svc-b"}  # svc-b may only delegate: it is the actor
    assert b_claims["sid"] == claims(a)["sid"]
    assert b_claims["exp"] <= claims(a)["exp"]
    actor = (
        await ex.http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "read"},
            auth=("svc-c", ex.secrets["svc-c"]),
        )
    ).json()["access_token"]
    c = await ex.exchange(
        "svc-c",
        b["access_token"],
        resource=D_API,
        actor_token=actor,
        actor_token_type=ACCESS,
    )
    c_claims = claims(c["access_token"])
    assert c_claims["aud"] == D_API
    assert c_claims["scope"] == "read"
    assert c_claims["act"] == {"sub": "svc-c", "act": {"sub": "svc-b"}}  # §4.1: outside in
    assert c_claims["client_id"] == "svc-c"
    assert c_claims["exp"] <= min(b_claims["exp"], claims(actor)["exp"])
    assert c["expires_in"] <= b["expires_in"]
    # The resource server's validator accepts it for its audience, act and all.
    validator = ex.services.userinfo
    token = await validator.authenticate("Bearer " + c["access_token"])
    assert token.extra["act"]["act"]["sub"] == "svc-b"


async def test_impersonation_keeps_the_subject_without_act(ex: Exchange) -> None:
    a = (await ex.sign_in())["access_token"]
    result = await ex.exchange("imp", a, scope="read")
    body = claims(result["access_token"])
    assert body["sub"] == claims(a)["sub"]
    assert "act" not in body
    assert body["aud"] == C_API  # the whole policy when no target is named
    assert body["client_id"] == "imp"


async def test_an_id_token_of_the_client_is_exchanged_for_identity_only(ex: Exchange) -> None:
    tokens = await ex.sign_in()
    result = await ex.post("web", subject_token=tokens["id_token"], subject_token_type=ID_TOKEN)
    assert result.status_code == 200, result.text
    body = claims(result.json()["access_token"])
    assert body["sub"] == claims(tokens["id_token"])["sub"]
    assert body["sid"] == claims(tokens["id_token"])["sid"]
    assert body["act"] == {"sub": "web"}
    assert "scope" not in body  # an ID token says who, not what
    widened = await ex.post(
        "web", subject_token=tokens["id_token"], subject_token_type=ID_TOKEN, scope="read"
    )
    assert widened.json()["error"] == "invalid_scope"
    # Another client's ID token proves nothing to svc-b (OIDC Core §3.1.3.7).
    other = await ex.post("svc-b", subject_token=tokens["id_token"], subject_token_type=ID_TOKEN)
    assert (other.status_code, other.json()["error"]) == (400, "invalid_request")


async def test_a_trusted_issuers_jwt_with_may_act(ex: Exchange) -> None:
    now = ex.clock()
    allowed = ex.partner.token(ISSUER, now, may_act={"sub": "svc-b"})
    result = await ex.post("svc-b", subject_token=allowed, subject_token_type=JWT, scope="read")
    assert result.status_code == 200, result.text
    body = claims(result.json()["access_token"])
    assert (body["sub"], body["act"], body["iss"]) == ("partner-user-7", {"sub": "svc-b"}, ISSUER)
    assert body["exp"] <= int(now) + 300
    other = ex.partner.token(ISSUER, now, may_act={"sub": "someone-else"})
    refused = await ex.post("svc-b", subject_token=other, subject_token_type=JWT)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
    assert "may_act" in refused.json()["error_description"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"scope": "read write admin"}, "invalid_scope"),
        ({"scope": "write"}, "invalid_scope"),  # svc-c may not ask for write at all
        ({"audience": C_API}, "invalid_target"),  # not in svc-c's policy
        ({"resource": "https://elsewhere.example/"}, "invalid_target"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "invalid_request",
        ),
        ({"actor_token": "x.y.z"}, "invalid_request"),  # actor_token without its type
        ({"actor_token": "not-a-token", "actor_token_type": ACCESS}, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
    ],
)
async def test_refusals(ex: Exchange, params: dict[str, str], error: str) -> None:
    a = (await ex.sign_in())["access_token"]
    b = await ex.exchange("svc-b", a, scope="read", audience=C_API)
    data = {"subject_token": b["access_token"], "subject_token_type": ACCESS, **params}
    response = await ex.post("svc-c", **data)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


async def test_widening_along_the_chain_is_refused(ex: Exchange) -> None:
    a = (await ex.sign_in())["access_token"]
    b = await ex.exchange("svc-b", a, scope="read", audience=C_API)
    response = await ex.post(
        "svc-b", subject_token=b["access_token"], subject_token_type=ACCESS, scope="read write"
    )
    assert response.json()["error"] == "invalid_scope"  # svc-b may, but the subject token lacks


async def test_client_policy_and_authentication(ex: Exchange) -> None:
    a = (await ex.sign_in())["access_token"]
    public = await ex.http.post(
        "/token",
        data={
            "grant_type": EXCHANGE,
            "client_id": "pub",
            "subject_token": a,
            "subject_token_type": ACCESS,
        },
    )
    assert (public.status_code, public.json()["error"]) == (400, "unauthorized_client")
    no_policy = await ex.post("nope", subject_token=a, subject_token_type=ACCESS)
    assert no_policy.json()["error"] == "invalid_target"
    anonymous = await ex.http.post(
        "/token", data={"grant_type": EXCHANGE, "subject_token": a, "subject_token_type": ACCESS}
    )
    assert anonymous.status_code == 401
    missing = await ex.post("svc-b", subject_token_type=ACCESS)
    assert missing.json()["error"] == "invalid_request"


async def test_an_expired_subject_token_is_refused(ex: Exchange) -> None:
    a = (await ex.sign_in())["access_token"]
    ex.clock.advance(claims(a)["exp"] - ex.clock() + 60)
    response = await ex.post("svc-b", subject_token=a, subject_token_type=ACCESS)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    foreign = ex.partner.token(ISSUER, ex.clock() - 600)  # expired 300 s ago
    response = await ex.post("svc-b", subject_token=foreign, subject_token_type=JWT)
    assert response.json()["error"] == "invalid_request"


async def test_a_key_for_another_algorithm_than_the_pinned_one_is_refused(
    ex: Exchange, pinned: ForeignIssuer
) -> None:
    token = pinned.token(ISSUER, ex.clock())  # ES256, verifiable with the issuer's own key
    response = await ex.post("svc-b", subject_token=token, subject_token_type=JWT)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert "algorithm" in response.json()["error_description"]


async def test_a_chain_is_bounded(ex: Exchange) -> None:
    token = (await ex.sign_in())["access_token"]
    for depth in range(1, 9):
        token = (await ex.exchange("svc-b", token, audience=C_API))["access_token"]
        assert _depth(claims(token)) == depth
    response = await ex.post("svc-b", subject_token=token, subject_token_type=ACCESS)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def _depth(body: dict[str, Any]) -> int:
    depth, act = 0, body.get("act")
    while act is not None:
        depth, act = depth + 1, act.get("act")
    return depth


async def test_foreign_tokens_that_prove_nothing_are_refused(ex: Exchange) -> None:
    now = ex.clock()
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = {"iss": ex.partner.issuer, "sub": "x", "aud": ISSUER, "exp": int(now) + 60}
    payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    unsigned = f"{header}.{payload}."
    stranger = ForeignIssuer("https://stranger.example").token(ISSUER, now)
    impostor = ForeignIssuer().token(ISSUER, now)  # right issuer name, wrong key
    other_audience = ex.partner.token("https://someone-else.example", now)
    hs256 = jwt.encode({**body, "iss": ex.partner.issuer}, "k" * 32, algorithm="HS256")
    for token in (unsigned, stranger, impostor, other_audience, hs256):
        response = await ex.post("svc-b", subject_token=token, subject_token_type=JWT)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def test_revoking_the_grant_kills_the_whole_chain(ex: Exchange) -> None:
    first = await ex.sign_in()
    b = await ex.exchange("svc-b", first["access_token"], scope="read", audience=C_API)
    c = await ex.exchange("svc-c", b["access_token"])
    for token in (b["access_token"], c["access_token"]):
        assert (await ex.introspect(token))["active"] is True
    revoked = await ex.http.post(
        "/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
        auth=("web", ex.secrets["web"]),
    )
    assert revoked.status_code == 200
    for token in (first["access_token"], b["access_token"], c["access_token"]):
        assert await ex.introspect(token) == {"active": False}
        with pytest.raises(InvalidToken):
            await ex.services.userinfo.authenticate("Bearer " + token)


async def test_opaque_tokens_chain_and_die_with_the_grant(ex: Exchange) -> None:
    first = await ex.sign_in()
    b = await ex.exchange("svc-o", first["access_token"])
    assert "." not in b["access_token"]  # a reference token
    seen = await ex.introspect(b["access_token"])
    assert (seen["active"], seen["act"], seen["client_id"]) == (True, {"sub": "svc-o"}, "svc-o")
    c = await ex.exchange("svc-c", b["access_token"])
    assert claims(c["access_token"])["act"] == {"sub": "svc-c", "act": {"sub": "svc-o"}}
    await ex.http.post(
        "/revoke", data={"token": first["refresh_token"]}, auth=("web", ex.secrets["web"])
    )
    for token in (b["access_token"], c["access_token"]):
        assert await ex.introspect(token) == {"active": False}


async def test_a_dpop_bound_subject_token_needs_a_proof_of_its_key(ex: Exchange) -> None:
    key, other = DpopKey(clock=ex.clock), DpopKey(clock=ex.clock)

    async def with_proof(signer: DpopKey, client: str, data: dict[str, str]) -> httpx.Response:
        nonce = None
        for _ in range(2):  # the first answer may be use_dpop_nonce (RFC 9449 §8)
            proof = signer.proof("POST", ISSUER + "/token", nonce=nonce)
            response = await ex.http.post(
                "/token", data=data, auth=(client, ex.secrets[client]), headers={"dpop": proof}
            )
            if response.status_code != 400 or response.json()["error"] != "use_dpop_nonce":
                break
            nonce = response.headers["dpop-nonce"]
        return response

    bound = await with_proof(key, "svc-c", {"grant_type": "client_credentials", "scope": "read"})
    assert bound.json()["token_type"] == "DPoP", bound.text
    subject = {
        "grant_type": EXCHANGE,
        "subject_token": bound.json()["access_token"],
        "subject_token_type": ACCESS,
    }
    bare = await ex.post("svc-b", **{k: v for k, v in subject.items() if k != "grant_type"})
    assert (bare.status_code, bare.json()["error"]) == (400, "invalid_request")
    wrong = await with_proof(other, "svc-b", subject)
    assert wrong.json()["error"] == "invalid_request"
    right = await with_proof(key, "svc-b", subject)
    assert right.status_code == 200, right.text
    assert right.json()["token_type"] == "DPoP"
    assert claims(right.json()["access_token"])["cnf"] == {"jkt": key.thumbprint}


async def test_logout_kills_the_whole_chain(ex: Exchange) -> None:
    first = await ex.sign_in()
    b = await ex.exchange("svc-b", first["access_token"], audience=C_API)
    c = await ex.exchange("svc-c", b["access_token"])
    ex.clock.advance(1)  # watermarks compare whole-second iat with the logout instant
    await ex.services.logout.end_session(claims(first["access_token"])["sid"])
    for token in (b["access_token"], c["access_token"]):
        assert await ex.introspect(token) == {"active": False}
    again = await ex.post("svc-b", subject_token=first["access_token"], subject_token_type=ACCESS)
    assert again.json()["error"] == "invalid_request"


async def test_discovery_lists_the_grant(ex: Exchange) -> None:
    document = (await ex.http.get("/.well-known/oauth-authorization-server")).json()
    assert EXCHANGE in document["grant_types_supported"]


async def test_a_certificate_bound_subject_token_needs_its_certificate(
    ex: Exchange, tmp_path: Path
) -> None:
    """RFC 8705 §3: a subject token bound to a client certificate is exchanged only over a
    request presenting that certificate (here from a trusted proxy's header)."""
    svc_c = await ex.services.stores.clients.get("svc-c")
    assert svc_c is not None
    await ex.services.stores.clients.put(
        replace(svc_c, tls_client_certificate_bound_access_tokens=True)
    )
    pki = Pki(tmp_path)
    mine, other = pki.issue("mine", "mine"), pki.issue("other", "other")
    app = ProxyCertificateMiddleware(
        server_app(ex.services), header="x-client-cert", trusted=parse_networks(["127.0.0.1"])
    )
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:

        async def post(client: str, cert: Issued | None, **data: str) -> httpx.Response:
            headers = {"x-client-cert": quote(cert.pem, safe="")} if cert else {}
            return await http.post(
                "/token", data=data, auth=(client, ex.secrets[client]), headers=headers
            )

        bound = await post("svc-c", mine, grant_type="client_credentials", scope="read")
        assert bound.status_code == 200, bound.text
        subject = {
            "grant_type": EXCHANGE,
            "subject_token": bound.json()["access_token"],
            "subject_token_type": ACCESS,
        }
        for cert in (None, other):
            refused = await post("svc-b", cert, **subject)
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
        assert (await post("svc-b", mine, **subject)).status_code == 200
