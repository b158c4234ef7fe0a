"""Token exchange (RFC 8693) end to end over real HTTP on loopback: requests-oauth2client as the
services' client, PyJWT (against /jwks) as the third party that reads the result, and a
resource server's guard validator following the revocation feed. A chain A → B → C narrows at
each hop; revoking the grant or ending the session kills every token down the chain."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import jwt
import pytest
import requests_oauth2client as roc

from tests.e2e.conftest import CALLBACK
from tests.e2e.live import free_port, serve_in_thread
from tests.oauth.exchange_setup import (
    ACCESS,
    C_API,
    D_API,
    JWT,
    PASSWORD,
    ForeignIssuer,
    register_exchange_clients,
    serve_jwks,
)
from tests.server.flows import Pkce, hidden_interaction, query_of
from tokenward.config import Settings, TrustedIssuerSetting
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores, open_stores
from tokenward.guard import InvalidToken, RemoteJwks, RemoteRevocations, Validator
from tokenward.tokens.sealing import generate_master_key


@dataclass
class Site:
    base: str
    secrets: dict[str, str]
    partner: ForeignIssuer

    def client(self, client_id: str) -> roc.OAuth2Client:
        # From our metadata; testing=True: the library wants https, this server is http on
        # loopback.
        return roc.OAuth2Client.from_discovery_endpoint(
            issuer=self.base,
            auth=roc.ClientSecretBasic(client_id, self.secrets[client_id]),
            testing=True,
        )

    def introspect(self, token: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.base}/introspect", data={"token": token}, auth=("svc-b", self.secrets["svc-b"])
        )
        body: dict[str, Any] = response.json()
        return body


async def _prepare(settings: Settings, backend: str) -> tuple[Any, dict[str, str]]:
    stores = memory_stores() if backend == "memory" else await open_stores(settings)
    services = await build_services(settings, stores)
    secrets = await register_exchange_clients(services, CALLBACK)
    created = await services.client_admin.create_client(
        "short", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    short = await services.stores.clients.get("short")
    assert short is not None
    await services.stores.clients.put(replace(short, access_token_lifetime=1))
    secrets["short"] = created["client_secret"]
    web = await services.stores.clients.get("web")
    assert web is not None
    await services.stores.clients.put(replace(web, post_logout_redirect_uris=(CALLBACK,)))
    await stores.aclose()  # pooled SQL connections belong to this loop; the server opens its own
    return services, secrets


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    partner = ForeignIssuer()
    port = free_port()
    with serve_jwks(partner.jwks) as jwks_uri:
        settings = Settings(
            issuer=f"http://127.0.0.1:{port}",
            master_key=generate_master_key(),
            data_dir=tmp_path_factory.mktemp("exchange"),
            exchange_trusted_issuers=[
                TrustedIssuerSetting(issuer=partner.issuer, jwks_uri=jwks_uri, algorithm="ES256")
            ],
        )
        services, secrets = asyncio.run(_prepare(settings, request.param))
        try:
            with serve_in_thread(server_app(services), port) as base:
                yield Site(base, secrets, partner)
        finally:
            asyncio.run(services.stores.aclose())


def sign_in(site: Site, browser: httpx.Client | None = None) -> dict[str, str]:
    """alice at "web" (A): the code flow, in `browser` (its cookies: the session) or a new one."""
    if browser is None:
        with httpx.Client() as fresh:
            return sign_in(site, fresh)
    pkce = Pkce.new()
    page = browser.get(
        f"{site.base}/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": CALLBACK,
            "scope": "openid profile read write",
            "state": "s",
            "nonce": "n",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    )
    done = browser.post(
        f"{site.base}/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    if done.status_code == 200:
        done = browser.post(
            f"{site.base}/consent",
            data={"interaction": hidden_interaction(done.text), "decision": "approve"},
        )
    code = query_of(done.headers["location"])["code"]
    tokens = httpx.post(
        f"{site.base}/token",
        auth=("web", site.secrets["web"]),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    body: dict[str, str] = tokens.json()
    return body


def chain(site: Site, subject: str) -> tuple[roc.BearerToken, roc.BearerToken]:
    """B exchanges A's token for C and D (delegating), C exchanges that for D alone, with its
    own client-credentials token as the actor token."""
    b = site.client("svc-b").token_exchange(
        subject_token=subject,
        subject_token_type=ACCESS,
        scope="read write",
        resource=[C_API, D_API],
    )
    actor = site.client("svc-c").client_credentials(scope="read")
    c = site.client("svc-c").token_exchange(
        subject_token=b.access_token,
        subject_token_type=ACCESS,
        actor_token=actor.access_token,
        actor_token_type=ACCESS,
        scope="read",
        resource=D_API,
    )
    return b, c


def guard(site: Site) -> tuple[Validator, RemoteRevocations]:
    """A resource server for D: our JWKS fetched, our revocation feed followed."""
    follower = RemoteRevocations(site.base)
    validator = Validator(
        issuer=site.base, audience=D_API, keys=RemoteJwks(f"{site.base}/jwks"), revocations=follower
    )
    return validator, follower


def until(condition: Callable[[], bool], bound: float = 5.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def refuses(validator: Validator, token: str) -> bool:
    try:
        validator.authenticate_sync("Bearer " + token)
    except InvalidToken:
        return True
    return False


def test_a_chain_narrows_and_tells_itself_in_act(site: Site) -> None:
    a = sign_in(site)["access_token"]
    b, c = chain(site, a)
    assert b.scope == "read write"
    assert c.scope == "read"
    assert c.expires_in is not None
    assert b.expires_in is not None
    keys = jwt.PyJWKClient(f"{site.base}/jwks")
    read = {
        name: jwt.decode(
            token,
            keys.get_signing_key_from_jwt(token).key,
            algorithms=["ES256"],
            issuer=site.base,
            audience=audience,
        )
        for name, token, audience in (
            ("a", a, site.base + "/api"),
            ("b", b.access_token, C_API),
            ("c", c.access_token, D_API),
        )
    }
    assert read["b"]["aud"] == [C_API, D_API]
    assert read["c"]["aud"] == D_API
    assert set(read["b"]["scope"].split()) < set(read["a"]["scope"].split())
    assert read["a"]["sub"] == read["b"]["sub"] == read["c"]["sub"]
    assert "act" not in read["a"]
    assert read["b"]["act"] == {"sub": "svc-b"}
    assert read["c"]["act"] == {"sub": "svc-c", "act": {"sub": "svc-b"}}
    assert read["a"]["exp"] >= read["b"]["exp"] >= read["c"]["exp"]
    validator, follower = guard(site)
    try:
        token = validator.authenticate_sync("Bearer " + c.access_token, frozenset({"read"}))
        assert token.extra["act"]["act"]["sub"] == "svc-b"
    finally:
        follower.close()


def test_revoking_the_grant_kills_every_exchanged_token(site: Site) -> None:
    first = sign_in(site)
    b, c = chain(site, first["access_token"])
    validator, follower = guard(site)
    try:
        assert not refuses(validator, c.access_token)
        revoked = httpx.post(
            f"{site.base}/revoke",
            data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
            auth=("web", site.secrets["web"]),
        )
        assert revoked.status_code == 200
        for token in (b.access_token, c.access_token):
            assert site.introspect(token) == {"active": False}
        until(lambda: refuses(validator, c.access_token))
    finally:
        follower.close()


def test_logout_kills_every_exchanged_token(site: Site) -> None:
    browser = httpx.Client()
    first = sign_in(site, browser)
    b, c = chain(site, first["access_token"])
    validator, follower = guard(site)
    try:
        assert not refuses(validator, c.access_token)
        # Watermarks compare whole-second iat with the logout instant: log out in a later second.
        issued = int(time.time())
        until(lambda: int(time.time()) > issued)
        ended = browser.get(
            f"{site.base}/logout",
            params={"id_token_hint": first["id_token"], "post_logout_redirect_uri": CALLBACK},
        )
        assert ended.status_code == 302
        for token in (b.access_token, c.access_token):
            assert site.introspect(token) == {"active": False}
        until(lambda: refuses(validator, c.access_token))
        with pytest.raises(roc.InvalidRequest):  # nor can the dead subject token be exchanged
            site.client("svc-b").token_exchange(
                subject_token=first["access_token"], subject_token_type=ACCESS
            )
    finally:
        follower.close()
        browser.close()


def _unsigned(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


def test_refusals_over_http(site: Site) -> None:
    a = sign_in(site)["access_token"]
    svc_b, svc_c = site.client("svc-b"), site.client("svc-c")
    b = svc_b.token_exchange(
        subject_token=a, subject_token_type=ACCESS, scope="read", resource=C_API
    )
    with pytest.raises(roc.InvalidScope):  # widening along the chain
        svc_c.token_exchange(
            subject_token=b.access_token, subject_token_type=ACCESS, scope="read write"
        )
    with pytest.raises(roc.InvalidTarget):  # svc-c's policy allows D only
        svc_c.token_exchange(
            subject_token=b.access_token, subject_token_type=ACCESS, resource=C_API
        )
    now = time.time()
    not_for_c = site.partner.token(site.base, now, may_act={"sub": "svc-b"})
    with pytest.raises(roc.InvalidRequest):  # may_act names another actor
        svc_c.token_exchange(subject_token=not_for_c, subject_token_type=JWT)
    assert (
        svc_b.token_exchange(subject_token=not_for_c, subject_token_type=JWT).scope == "read write"
    )
    expired = site.partner.token(site.base, now - 400)
    with pytest.raises(roc.InvalidRequest):
        svc_b.token_exchange(subject_token=expired, subject_token_type=JWT)
    short = site.client("short").client_credentials(scope="read").access_token
    until(lambda: time.time() >= jwt.decode(short, options={"verify_signature": False})["exp"] + 1)
    with pytest.raises(roc.InvalidRequest):  # our own token, expired
        svc_b.token_exchange(subject_token=short, subject_token_type=ACCESS)
    unsigned = _unsigned(
        {"iss": site.partner.issuer, "sub": "x", "aud": site.base, "exp": int(now) + 60}
    )
    with pytest.raises(roc.InvalidRequest):
        svc_b.token_exchange(subject_token=unsigned, subject_token_type=JWT)
    with pytest.raises(roc.InvalidRequest):  # an actor token that is no token of ours
        svc_b.token_exchange(
            subject_token=a,
            subject_token_type=ACCESS,
            actor_token=unsigned,
            actor_token_type=ACCESS,
        )
    public = httpx.post(
        f"{site.base}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": "pub",
            "subject_token": a,
            "subject_token_type": ACCESS,
        },
    )
    assert (public.status_code, public.json()["error"]) == (400, "unauthorized_client")
    metadata = httpx.get(f"{site.base}/.well-known/oauth-authorization-server").json()
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in metadata["grant_types_supported"]
