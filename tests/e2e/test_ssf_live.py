"""Continuous access evaluation over real HTTP on loopback: the Shared Signals transmitter's SETs
(push and poll) and back-channel logout tokens, judged by jwcrypto against the server's /jwks;
and SETs made with jwcrypto, pushed to our receiver, verified and acted on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwk, jws, jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.live import free_port, serve_in_thread
from tests.server.flows import Pkce, hidden_interaction, query_of
from tokenward.config import Settings, TrustedIssuerSetting
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores, open_stores
from tokenward.tokens.sealing import generate_master_key

PASSWORD = "correct horse battery"
CALLBACK = "http://127.0.0.1:9/callback"  # never contacted: the test reads the redirect
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
BACKCHANNEL = "http://schemas.openid.net/event/backchannel-logout"
PUSH, POLL = "urn:ietf:rfc:8935", "urn:ietf:rfc:8936"
OTHER_ISSUER = "https://idp.example"  # the transmitter whose SETs our receiver accepts


@dataclass
class Received:
    """What the test relying party / SET receiver got, by path (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def add(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.calls.append((path, headers, body))

    def wait_for(
        self, path: str, accept: Callable[[dict[str, str], bytes], bool], timeout: float = 10.0
    ) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for seen, headers, body in self.calls:
                    if seen == path and accept(headers, body):
                        return headers, body
            time.sleep(0.02)
        raise AssertionError(f"nothing acceptable reached {path} in {timeout} s")


def relying_party(received: Received, transmitter_key: jwk.JWK) -> Starlette:
    """The other side, as a small Starlette app: a push SET receiver (RFC 8935: 202), a
    back-channel logout endpoint (200), and the JWKS of a transmitter of its own."""

    async def events(request: Request) -> Response:
        received.add("/events", dict(request.headers), await request.body())
        return Response(status_code=202)

    async def backchannel(request: Request) -> Response:
        form = await request.form()
        received.add("/backchannel", dict(request.headers), str(form["logout_token"]).encode())
        return Response(status_code=200, headers={"cache-control": "no-store"})

    async def keys(_request: Request) -> Response:
        return JSONResponse({"keys": [transmitter_key.export_public(as_dict=True)]})

    return Starlette(
        routes=[
            Route("/events", events, methods=["POST"]),
            Route("/backchannel", backchannel, methods=["POST"]),
            Route("/jwks", keys),
        ]
    )


@dataclass
class Env:
    base: str
    rp: str
    received: Received
    transmitter_key: jwk.JWK
    alice: str
    secrets: dict[str, str]
    # Users of their own for the tests that revoke them, so that one test's revocation (and
    # the transmitter's once-a-minute damping of user-wide signals) leaves the others alone.
    others: dict[str, str] = field(default_factory=dict)
    cli_env: dict[str, str] | None = None  # the CLI on the same database (SQLite only)

    def token(self, client: str, scope: str) -> str:
        response = httpx.post(
            f"{self.base}/token",
            auth=(client, self.secrets[client]),
            data={"grant_type": "client_credentials", "scope": scope},
        )
        assert response.status_code == 200, response.text
        value: str = response.json()["access_token"]
        return value

    def keys(self) -> jwk.JWKSet:
        return jwk.JWKSet.from_json(httpx.get(f"{self.base}/jwks").text)


async def _prepare(issuer: str, rp: str, backend: str, data_dir: Path) -> tuple[Services, Env]:
    master_key = generate_master_key()
    settings = Settings(
        issuer=issuer,
        master_key=master_key,
        data_dir=data_dir,
        ssf_transmitters=[
            TrustedIssuerSetting(issuer=OTHER_ISSUER, jwks_uri=f"{rp}/jwks", algorithm="ES256")
        ],
        outbound_allow_loopback=True,  # the test relying party and receiver are on loopback
    )
    stores = memory_stores() if backend == "memory" else await open_stores(settings)
    services = await build_services(settings, stores)
    admin = services.client_admin
    made = {
        "receiver": await admin.create_client(
            "receiver", grant_types=["client_credentials"], scope="ssf.manage", redirect_uris=[]
        ),
        "ops": await admin.create_client(
            "ops", grant_types=["client_credentials"], scope="tokenward:admin", redirect_uris=[]
        ),
        "web": await admin.create_client(
            "web",
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile read",
            redirect_uris=[CALLBACK],
            backchannel_logout_uri=f"{rp}/backchannel",
            backchannel_logout_session_required=True,
        ),
    }
    web = await stores.clients.get("web")
    assert web is not None
    await stores.clients.put(replace(web, post_logout_redirect_uris=(CALLBACK,)))
    alice = await services.user_admin.create_user("alice", PASSWORD)
    others = {
        name: (await services.user_admin.create_user(name, PASSWORD))["user_id"]
        for name in ("bob", "carol", "erin")
    }
    await stores.aclose()  # the server thread opens its own connections
    secrets = {name: view["client_secret"] for name, view in made.items()}
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid="idp-1", alg="ES256", use="sig")
    cli_env = None
    if backend != "memory":
        cli_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")},
            "TOKENWARD_ISSUER": issuer,
            "TOKENWARD_MASTER_KEY": master_key,
            "TOKENWARD_DATA_DIR": str(data_dir),
        }
    env = Env(issuer, rp, Received(), key, alice["user_id"], secrets, others, cli_env)
    return services, env


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    port, rp_port = free_port(), free_port()
    issuer, rp = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rp_port}"
    data_dir = tmp_path_factory.mktemp("tokenward")
    services, prepared = asyncio.run(_prepare(issuer, rp, request.param, data_dir))
    try:
        with (
            serve_in_thread(relying_party(prepared.received, prepared.transmitter_key), rp_port),
            serve_in_thread(server_app(services), port),
        ):
            yield prepared
    finally:
        asyncio.run(services.stores.aclose())


def code_flow(env: Env, http: httpx.Client, username: str = "alice") -> dict[str, str]:
    pkce = Pkce.new()
    page = http.get(
        f"{env.base}/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": CALLBACK,
            "scope": "openid profile read",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    )
    done = http.post(
        f"{env.base}/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": username,
            "password": PASSWORD,
        },
    )
    if done.status_code == 200:  # consent is asked once per user and client
        done = http.post(
            f"{env.base}/consent",
            data={"interaction": hidden_interaction(done.text), "decision": "approve"},
        )
    assert done.status_code == 302, done.text[:300]
    tokens = http.post(
        f"{env.base}/token",
        auth=("web", env.secrets["web"]),
        data={
            "grant_type": "authorization_code",
            "code": query_of(done.headers["location"])["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    body: dict[str, str] = tokens.json()
    return body


def verified(token: str, keys: jwk.JWKSet, typ: str) -> dict[str, Any]:
    """The claims of a token jwcrypto verifies with the server's published keys, after checking
    its `typ` header."""
    checked = jwt.JWT(jwt=token, key=keys, algs=["ES256", "RS256"])
    assert checked.token.jose_header["typ"] == typ
    claims: dict[str, Any] = json.loads(checked.claims)
    return claims


def claims_of(token: str) -> dict[str, Any]:
    """Unverified claims, to pick the right delivery out of several."""
    parsed = jws.JWS()
    parsed.deserialize(token)
    claims: dict[str, Any] = json.loads(parsed.objects["payload"])
    return claims


def manage(env: Env) -> httpx.Client:
    """A client of the stream management API with the receiver's ssf.manage token."""
    token = env.token("receiver", "ssf.manage")
    return httpx.Client(base_url=env.base, headers={"authorization": f"Bearer {token}"})


def test_metadata_and_discovery(env: Env) -> None:
    metadata = httpx.get(f"{env.base}/.well-known/ssf-configuration").json()
    discovery = httpx.get(f"{env.base}/.well-known/openid-configuration").json()

    assert metadata["issuer"] == env.base
    assert metadata["jwks_uri"] == f"{env.base}/jwks"
    assert metadata["delivery_methods_supported"] == [PUSH, POLL]
    assert metadata["configuration_endpoint"] == f"{env.base}/ssf/streams"
    assert discovery["backchannel_logout_supported"] is True
    assert discovery["backchannel_logout_session_supported"] is True


def test_stream_management_needs_the_scope_and_is_per_client(env: Env) -> None:
    assert httpx.get(f"{env.base}/ssf/streams").status_code == 401
    other = env.token("ops", "tokenward:admin")
    wrong = httpx.get(f"{env.base}/ssf/streams", headers={"authorization": f"Bearer {other}"})
    assert wrong.status_code == 403
    with manage(env) as http:
        created = http.post("/ssf/streams", json={"delivery": {"method": POLL}})
        assert created.status_code == 201, created.text
        stream_id = created.json()["stream_id"]
        assert created.json()["aud"] == "receiver"
        assert created.json()["delivery"]["endpoint_url"] == f"{env.base}/ssf/poll/{stream_id}"
        patched = http.patch(
            "/ssf/streams", json={"stream_id": stream_id, "description": "for the test"}
        )
        assert patched.json()["description"] == "for the test"
        paused = http.post("/ssf/status", json={"stream_id": stream_id, "status": "paused"})
        assert paused.json() == {"stream_id": stream_id, "status": "paused"}
        assert http.get("/ssf/status", params={"stream_id": stream_id}).json()["status"] == "paused"
        bad = http.post("/ssf/status", json={"stream_id": stream_id, "status": "sleeping"})
        assert bad.status_code == 400
        private = http.post(
            "/ssf/streams",
            json={"delivery": {"method": PUSH, "endpoint_url": "http://10.0.0.1/events"}},
        )
        assert private.status_code == 400  # http is for loopback only
        for internal in ("https://10.0.0.1/events", "https://169.254.169.254/latest/meta-data"):
            refused = http.post(
                "/ssf/streams", json={"delivery": {"method": PUSH, "endpoint_url": internal}}
            )
            assert refused.status_code == 400, internal  # SSRF: not a public address
            assert "address" in refused.json()["error_description"]
        assert http.delete("/ssf/streams", params={"stream_id": stream_id}).status_code == 204
        gone = http.get("/ssf/streams", params={"stream_id": stream_id})
        assert gone.status_code == 404


def test_push_sets_and_backchannel_logout_verify_with_jwcrypto(env: Env) -> None:
    with manage(env) as http:
        stream = http.post(
            "/ssf/streams",
            json={
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": f"{env.rp}/events",
                    "authorization_header": "Bearer receiver-secret",
                },
                "events_requested": [CAEP + "session-revoked", CAEP + "credential-change"],
            },
        ).json()
        stream_id = stream["stream_id"]
        subject = {"format": "iss_sub", "iss": env.base, "sub": env.alice}
        added = http.post("/ssf/subjects:add", json={"stream_id": stream_id, "subject": subject})
        assert added.status_code == 200
        assert (
            http.post("/ssf/verify", json={"stream_id": stream_id, "state": "st-1"}).status_code
            == 204
        )
        keys = env.keys()

        headers, body = env.received.wait_for(
            "/events", lambda _h, b: VERIFICATION in claims_of(b.decode())["events"]
        )
        verification = verified(body.decode(), keys, "secevent+jwt")
        assert headers["content-type"] == "application/secevent+jwt"
        assert headers["authorization"] == "Bearer receiver-secret"
        assert verification["iss"] == env.base
        assert verification["aud"] == "receiver"
        assert verification["events"][VERIFICATION] == {"state": "st-1"}

        with httpx.Client() as browser:
            tokens = code_flow(env, browser)
            sid = claims_of(tokens["id_token"])["sid"]
            time.sleep(1.05)  # watermarks compare whole-second iat with the logout instant
            logout = browser.get(
                f"{env.base}/logout",
                params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": CALLBACK},
            )
            assert logout.status_code == 302

        _h, pushed = env.received.wait_for(
            "/events",
            lambda _h, b: claims_of(b.decode())["sub_id"].get("session", {}).get("id") == sid,
        )
        revoked = verified(pushed.decode(), keys, "secevent+jwt")
        assert revoked["sub_id"]["user"] == subject
        event = revoked["events"][CAEP + "session-revoked"]
        assert isinstance(event["event_timestamp"], int)
        assert "sub" not in revoked  # SSF 1.0: the subject is sub_id

        _h, raw = env.received.wait_for(
            "/backchannel", lambda _h, b: claims_of(b.decode()).get("sid") == sid
        )
        logout_token = verified(raw.decode(), keys, "logout+jwt")
        assert logout_token["iss"] == env.base
        assert logout_token["aud"] == "web"
        assert logout_token["sub"] == env.alice
        assert logout_token["events"] == {BACKCHANNEL: {}}
        assert "nonce" not in logout_token
        assert logout_token["iat"] <= time.time() + 1 < logout_token["exp"]
        assert http.delete("/ssf/streams", params={"stream_id": stream_id}).status_code == 204


def test_poll_delivery_with_acknowledgements(env: Env) -> None:
    with manage(env) as http:
        stream = http.post(
            "/ssf/streams",
            json={"delivery": {"method": POLL}, "events_requested": [CAEP + "session-revoked"]},
        ).json()
        stream_id, poll = stream["stream_id"], f"/ssf/poll/{stream['stream_id']}"
        subject = {"format": "iss_sub", "iss": env.base, "sub": env.others["erin"]}
        http.post("/ssf/subjects:add", json={"stream_id": stream_id, "subject": subject})
        assert http.post(poll, json={"returnImmediately": True}).json() == {
            "sets": {},
            "moreAvailable": False,
        }
        http.post("/ssf/verify", json={"stream_id": stream_id, "state": "polled"})
        ops = env.token("ops", "tokenward:admin")
        forced = httpx.post(
            f"{env.base}/admin/api/users/{env.others['erin']}/logout",
            headers={"authorization": f"Bearer {ops}"},
        )
        assert forced.status_code == 200, forced.text
        keys = env.keys()

        deadline = time.monotonic() + 10
        sets: dict[str, str] = {}
        while len(sets) < 2 and time.monotonic() < deadline:
            answer = http.post(poll, json={"maxEvents": 10, "returnImmediately": False}, timeout=30)
            sets = answer.json()["sets"]
        assert len(sets) == 2
        by_event = {
            next(iter(verified(token, keys, "secevent+jwt")["events"])): jti
            for jti, token in sets.items()
        }
        assert set(by_event) == {VERIFICATION, CAEP + "session-revoked"}
        revoked = claims_of(sets[by_event[CAEP + "session-revoked"]])
        assert revoked["sub_id"] == subject  # every session of the user
        assert revoked["jti"] == by_event[CAEP + "session-revoked"]

        # Unacknowledged SETs come again; acknowledged ones do not.
        again = http.post(poll, json={"returnImmediately": True, "maxEvents": 1}).json()
        assert len(again["sets"]) == 1
        assert again["moreAvailable"] is True
        done = http.post(poll, json={"ack": list(sets), "returnImmediately": True}).json()
        assert done == {"sets": {}, "moreAvailable": False}
        assert http.delete("/ssf/streams", params={"stream_id": stream_id}).status_code == 204


def test_a_revocation_by_the_cli_is_signalled_by_the_server(env: Env) -> None:
    """Another process writes to the revocation log; the server follows the log and signals."""
    if env.cli_env is None:
        pytest.skip("the memory backend has no log another process could write to")
    with manage(env) as http:
        stream = http.post(
            "/ssf/streams",
            json={"delivery": {"method": POLL}, "events_requested": [CAEP + "session-revoked"]},
        ).json()
        poll = f"/ssf/poll/{stream['stream_id']}"
        subject = {"format": "iss_sub", "iss": env.base, "sub": env.others["carol"]}
        http.post("/ssf/subjects:add", json={"stream_id": stream["stream_id"], "subject": subject})
        tokenward = Path(sys.executable).parent / "tokenward"

        revoked = subprocess.run(
            [str(tokenward), "revoke", "--subject", env.others["carol"]],
            env=env.cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert revoked.returncode == 0, revoked.stderr
        answer = http.post(poll, json={"returnImmediately": False}, timeout=30).json()
        [token] = answer["sets"].values()
        claims = verified(token, env.keys(), "secevent+jwt")
        assert claims["sub_id"] == subject
        assert CAEP + "session-revoked" in claims["events"]
        assert (
            http.delete("/ssf/streams", params={"stream_id": stream["stream_id"]}).status_code
            == 204
        )


def other_set(
    env: Env, claims: dict[str, Any], key: jwk.JWK | None = None, user: str = "bob"
) -> str:
    """A SET made with jwcrypto by the configured transmitter."""
    now = int(time.time())
    payload = {
        "iss": OTHER_ISSUER,
        "aud": env.base,
        "iat": now,
        "jti": f"set-{time.monotonic_ns()}",
        "sub_id": {"format": "iss_sub", "iss": OTHER_ISSUER, "sub": env.others[user]},
        "events": {CAEP + "session-revoked": {"event_timestamp": now}},
        **claims,
    }
    token = jwt.JWT(header={"alg": "ES256", "kid": "idp-1", "typ": "secevent+jwt"}, claims=payload)
    token.make_signed_token(key or env.transmitter_key)
    serialized: str = token.serialize()
    return serialized


def push(env: Env, token: str) -> httpx.Response:
    return httpx.post(
        f"{env.base}/ssf/receive",
        content=token,
        headers={"content-type": "application/secevent+jwt", "accept": "application/json"},
    )


def test_our_receiver_accepts_a_jwcrypto_set_and_acts(env: Env) -> None:
    with httpx.Client() as browser:
        tokens = code_flow(env, browser, "bob")
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{env.base}/userinfo", headers=bearer).status_code == 200
    time.sleep(1.05)  # watermarks compare whole-second iat with the revocation instant
    token = other_set(env, {})

    accepted = push(env, token)
    replayed = push(env, token)

    assert accepted.status_code == 202, accepted.text
    assert httpx.get(f"{env.base}/userinfo", headers=bearer).status_code == 401
    # A duplicate (a transmitter's retry after a lost answer) is acknowledged, not acted on
    # again: a 400 would count as a refused delivery at the transmitter.
    assert replayed.status_code == 202, replayed.text


@pytest.mark.parametrize(
    ("change", "err"),
    [
        ("forged", "invalid_key"),
        ("tampered", "invalid_key"),
        ("audience", "invalid_audience"),
        ("issuer", "invalid_issuer"),
        ("old", "invalid_request"),
        ("typ", "invalid_request"),
    ],
)
def test_our_receiver_refuses_bad_sets(env: Env, change: str, err: str) -> None:
    forger = jwk.JWK.generate(kty="EC", crv="P-256", kid="idp-1", alg="ES256")
    changed_claims: dict[str, dict[str, Any]] = {
        "audience": {"aud": "https://someone-else.example"},
        "issuer": {"iss": "https://unknown.example"},
        "old": {"iat": int(time.time()) - 7200},
    }
    claims = changed_claims.get(change, {})
    token = other_set(env, claims, forger if change == "forged" else None)
    if change == "tampered":
        header, payload, signature = token.split(".")
        token = f"{header}.{payload}.{signature[:-4]}AAAA"
    if change == "typ":
        plain = jwt.JWT(
            header={"alg": "ES256", "kid": "idp-1", "typ": "JWT"}, claims=claims_of(token)
        )
        plain.make_signed_token(env.transmitter_key)
        token = plain.serialize()

    refused = push(env, token)

    assert refused.status_code == 400
    assert refused.json()["err"] == err
