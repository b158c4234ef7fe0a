"""Second factors end to end over real HTTP on loopback (memory and SQLite stores): a user
turns on an authenticator app at /account, sign-ins then ask for its code, a code is good once,
recovery codes are good once, and the tokens, ID token and introspection say how the user
signed in (acr/amr). A client's minimum level is enforced."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pyotp
import pytest

from tests.e2e.live import free_port, serve_in_thread
from tests.server.flows import Pkce, hidden_interaction, query_of
from tokenward.config import Settings
from tokenward.core.assurance import MFA, PHR, PWD
from tokenward.core.records import PasskeyCredential
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, StoreSet, build_services, memory_stores, open_stores
from tokenward.tokens.sealing import generate_master_key

CALLBACK = "http://127.0.0.1:9/callback"
FORM = {"content-type": "application/x-www-form-urlencoded"}
PASSWORD = "correct horse battery"


@dataclass
class Server:
    base: str
    services: Services
    secrets: dict[str, str]
    settings: Settings
    backend: str

    def change_stores(self, change: Callable[[StoreSet], Awaitable[None]]) -> None:
        """Reach into the running server's storage, as a tampering operator or a corrupted
        disk would: its own stores in memory, a second connection to its SQLite file."""

        async def run() -> None:
            if self.backend == "memory":
                await change(self.services.stores)
                return
            stores = await open_stores(self.settings)
            try:
                await change(stores)
            finally:
                await stores.aclose()

        asyncio.run(run())


async def _prepare(
    issuer: str, backend: str, data_dir: Path
) -> tuple[Services, dict[str, str], Settings]:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), data_dir=data_dir)
    stores = memory_stores() if backend == "memory" else await open_stores(settings)
    services = await build_services(settings, stores)
    secrets = {}
    for client_id, min_acr in (("web", None), ("strict", MFA), ("keys-only", PHR)):
        created = await services.client_admin.create_client(
            client_id,
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile read",
            redirect_uris=[CALLBACK],
            skip_consent=True,
            min_acr=min_acr,
        )
        secrets[client_id] = created["client_secret"]
    for client_id, min_acr in (("tv", None), ("tv-strict", MFA), ("tv-keys", PHR)):
        await services.client_admin.create_client(
            client_id,
            grant_types=["urn:ietf:params:oauth:grant-type:device_code"],
            scope="openid read",
            redirect_uris=[],
            public=True,
            min_acr=min_acr,
        )
    for username in ("tess", "pat", "dana", "quinn", "rory", "devon", "vera", "uma", "kit"):
        await services.user_admin.create_user(username, PASSWORD)
    await stores.aclose()
    return services, secrets, settings


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("tokenward")
    services, secrets, settings = asyncio.run(
        _prepare(f"http://127.0.0.1:{port}", request.param, data_dir)
    )
    try:
        with serve_in_thread(server_app(services), port) as base:
            yield Server(base, services, secrets, settings, request.param)
    finally:
        asyncio.run(services.stores.aclose())


def _authorize(server: Server, http: httpx.Client, pkce: Pkce, **extra: str) -> httpx.Response:
    return http.get(
        f"{server.base}/authorize",
        params={
            "response_type": "code",
            "client_id": extra.pop("client_id", "web"),
            "redirect_uri": CALLBACK,
            "scope": "openid profile read",
            "state": "s",
            "nonce": "n",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            **extra,
        },
    )


def _password(
    server: Server, http: httpx.Client, page: httpx.Response, user: str
) -> httpx.Response:
    return http.post(
        f"{server.base}/login",
        data={"interaction": hidden_interaction(page.text), "username": user, "password": PASSWORD},
    )


def _tokens(server: Server, http: httpx.Client, done: httpx.Response, pkce: Pkce) -> dict[str, Any]:
    assert done.status_code == 302, done.text[:500]
    redirect = query_of(done.headers["location"])
    assert "code" in redirect, redirect
    response = http.post(
        f"{server.base}/token",
        auth=("web", server.secrets["web"]),
        data={
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _enrol_totp(server: Server, http: httpx.Client, user: str) -> tuple[str, list[str]]:
    """Sign in at /account, scan the QR code (read the secret), confirm a code: the secret and
    the recovery codes shown once."""
    login = http.get(f"{server.base}/account")
    assert login.status_code == 200
    assert 'action="/login"' in login.text
    page = http.post(
        f"{server.base}/login",
        data={
            "interaction": hidden_interaction(login.text),
            "username": user,
            "password": PASSWORD,
        },
    )
    assert page.status_code == 302
    assert page.headers["location"] == "/account"
    page = http.get(f"{server.base}/account")
    assert 'src="data:image/svg+xml' in page.text  # the QR code, inline
    assert "img-src data:" in page.headers["content-security-policy"]
    match = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert match is not None
    secret = match.group(1)
    wrong = http.post(
        f"{server.base}/account/totp",
        data={"interaction": hidden_interaction(page.text), "code": "000000"},
    )
    assert wrong.status_code == 400, wrong.text[:2000]
    match = re.search(r'id="totp-secret">([A-Z2-7]+)<', wrong.text)  # a new secret each time
    assert match is not None
    secret = match.group(1)
    done = http.post(
        f"{server.base}/account/totp",
        data={"interaction": hidden_interaction(wrong.text), "code": pyotp.TOTP(secret).now()},
    )
    assert done.status_code == 200, done.text[:500]
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == 10
    return secret, codes


def test_totp_sign_in_acr_amr_replay_and_recovery(server: Server) -> None:
    with httpx.Client() as setup:
        secret, codes = _enrol_totp(server, setup, "tess")

    # A new browser: the password alone is not enough any more.
    with httpx.Client() as http:
        pkce = Pkce.new()
        factor = _password(server, http, _authorize(server, http, pkce), "tess")
        assert factor.status_code == 200
        assert 'action="/login/totp"' in factor.text
        # The next step's code (within the window of one step either side): the current one
        # was used up by the enrolment, and a used code is refused (the replay below).
        code = pyotp.TOTP(secret).at(time.time() + 30)
        done = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(factor.text), "code": code},
        )
        tokens = _tokens(server, http, done, pkce)
        id_token, access = _claims(tokens["id_token"]), _claims(tokens["access_token"])
        assert (id_token["acr"], id_token["amr"]) == (MFA, ["pwd", "otp"])
        assert (access["acr"], access["amr"]) == (MFA, ["pwd", "otp"])
        introspected = http.post(
            f"{server.base}/introspect",
            auth=("web", server.secrets["web"]),
            data={"token": tokens["access_token"]},
        ).json()
        assert introspected["active"]
        assert introspected["amr"] == ["pwd", "otp"]

    # The same code in another browser: refused, though it is still within its window.
    with httpx.Client() as http:
        pkce = Pkce.new()
        factor = _password(server, http, _authorize(server, http, pkce), "tess")
        replay = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(factor.text), "code": code},
        )
        assert replay.status_code == 401
        assert "already used" in replay.text
        failures = server.services.metrics.registry.get_sample_value(
            "tokenward_sign_in_failures_total", {"reason": "wrong_second_factor"}
        )
        assert failures is not None
        assert failures >= 1
        # A recovery code instead: good once.
        done = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(replay.text), "code": codes[0].upper()},
        )
        assert _claims(_tokens(server, http, done, pkce)["access_token"])["acr"] == MFA
    with httpx.Client() as http:
        factor = _password(server, http, _authorize(server, http, Pkce.new()), "tess")
        again = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(factor.text), "code": codes[0]},
        )
        assert again.status_code == 401
        assert "recovery code" in again.text


def test_password_only_user_gets_pwd_and_cannot_use_a_strict_client(server: Server) -> None:
    with httpx.Client() as http:
        pkce = Pkce.new()
        # acr_values asks for more than pat can do: met as far as possible, and the token says so.
        done = _password(server, http, _authorize(server, http, pkce, acr_values=MFA), "pat")
        tokens = _tokens(server, http, done, pkce)
        assert _claims(tokens["id_token"])["amr"] == ["pwd"]
        assert _claims(tokens["access_token"])["acr"] == PWD
        # A client whose minimum pat cannot reach: access_denied, no code.
        refused = _authorize(server, http, Pkce.new(), client_id="keys-only")
        assert refused.status_code in (302, 303)
        assert query_of(refused.headers["location"])["error"] == "access_denied"


def test_discovery_lists_the_levels(server: Server) -> None:
    document = httpx.get(f"{server.base}/.well-known/openid-configuration").json()
    assert document["acr_values_supported"] == [PWD, MFA, PHR]
    assert "amr" in document["claims_supported"]


def test_a_device_is_approved_with_the_second_factor_too(server: Server) -> None:
    with httpx.Client() as setup:
        secret, _codes = _enrol_totp(server, setup, "dana")
    with httpx.Client(base_url=server.base) as http:
        start = http.post("/device_authorization", data={"client_id": "tv", "scope": "read"})
        user_code = start.json()["user_code"]
        page = http.get(start.json()["verification_uri_complete"])
        factor = http.post(
            "/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "dana",
                "password": PASSWORD,
            },
        )
        assert factor.status_code == 200
        assert 'action="/login/totp"' in factor.text
        back = http.post(
            "/login/totp",
            data={
                "interaction": hidden_interaction(factor.text),
                "code": pyotp.TOTP(secret).at(time.time() + 30),
            },
        )
        assert back.status_code in (302, 303)
        assert back.headers["location"].startswith("/device?")
        entered = http.get(back.headers["location"])
        assert 'action="/device"' in entered.text
        confirm = http.post(
            "/device",
            data={"interaction": hidden_interaction(entered.text), "user_code": user_code},
        )
        done = http.post(
            "/device/decision",
            data={"interaction": hidden_interaction(confirm.text), "decision": "approve"},
        )
        assert "Device connected" in done.text


def test_bad_input_to_the_factor_pages_is_4xx_never_5xx(server: Server) -> None:
    with httpx.Client(base_url=server.base) as http:
        assert http.post("/login/totp", data={"code": "123456"}).status_code == 400
        assert http.post("/login/passkey", data={"interaction": "x" * 20000}).status_code == 400
        signin = http.post("/login/passkey-signin", content=b"\xff\x00", headers=FORM)
        assert signin.status_code == 400
        for path in ("/account/totp", "/account/passkeys", "/account/passkeys/remove"):
            assert http.post(path, data={"interaction": "nope"}).status_code == 400
        script = http.get("/assets/passkeys.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")

    with httpx.Client() as setup:
        _enrol_totp(server, setup, "quinn")
    # A user with an app, signing in: garbage where the passkey answer goes, a huge code.
    with httpx.Client() as http:
        page = _authorize(server, http, Pkce.new())
        factor = _password(server, http, page, "quinn")
        assert 'action="/login/totp"' in factor.text
        garbage = http.post(
            f"{server.base}/login/passkey",
            data={"interaction": hidden_interaction(factor.text), "credential": "{not json"},
        )
        assert garbage.status_code == 401
        assert "could not be verified" in garbage.text
        huge = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(garbage.text), "code": "9" * 5000},
        )
        assert huge.status_code == 401
        # The passkey sign-in form of the sign-in page, with an answer that is no passkey.
        login = _authorize(server, http, Pkce.new(), prompt="login")
        forms = re.findall(r'name="interaction" value="([^"]+)"', login.text)
        assert len(forms) == 2  # the password form, and "Sign in with a passkey"
        fake = http.post(
            f"{server.base}/login/passkey-signin",
            data={"interaction": forms[1], "credential": '{"id": "AAAA", "rawId": "AAAA"}'},
        )
        assert fake.status_code == 401


def test_the_account_page_needs_the_factor_to_change_it(server: Server) -> None:
    with httpx.Client() as setup:
        _secret, codes = _enrol_totp(server, setup, "rory")
    with httpx.Client(base_url=server.base) as http:
        login = http.get("/account")
        factor = http.post(
            "/login",
            data={
                "interaction": hidden_interaction(login.text),
                "username": "rory",
                "password": PASSWORD,
            },
        )
        assert factor.status_code == 200
        assert 'action="/login/totp"' in factor.text  # the password alone opens nothing
        assert http.get("/account").text.count('action="/login/totp"') == 1  # still asked
        back = http.post(
            "/login/totp",
            data={"interaction": hidden_interaction(factor.text), "code": codes[1]},
        )
        assert (back.status_code, back.headers["location"]) == (302, "/account")
        page = http.get("/account")
        assert "An authenticator app is set up. 9 recovery codes left." in page.text
        removed = http.post(
            "/account/totp/remove", data={"interaction": hidden_interaction(page.text)}
        )
        assert "The authenticator is removed." in removed.text
    # Without a factor, the password alone signs rory in again.
    with httpx.Client() as http:
        pkce = Pkce.new()
        done = _password(server, http, _authorize(server, http, pkce), "rory")
        assert _claims(_tokens(server, http, done, pkce)["access_token"])["acr"] == PWD


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _device_start(http: httpx.Client, client_id: str, **extra: str) -> dict[str, Any]:
    started = http.post(
        "/device_authorization", data={"client_id": client_id, "scope": "openid read", **extra}
    )
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


def _device_poll(http: httpx.Client, client_id: str, device_code: str) -> httpx.Response:
    return http.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
    )


def _device_sign_in(
    http: httpx.Client, start: dict[str, Any], user: str, secret: str | None = None
) -> httpx.Response:
    """Open the verification URI, sign in (with the app's code when there is one): the code
    page."""
    page = http.get(start["verification_uri_complete"])
    signed_in = http.post(
        "/login",
        data={"interaction": hidden_interaction(page.text), "username": user, "password": PASSWORD},
    )
    if secret is not None:
        assert 'action="/login/totp"' in signed_in.text
        back = http.post(
            "/login/totp",
            data={
                "interaction": hidden_interaction(signed_in.text),
                "code": pyotp.TOTP(secret).at(time.time() + 30),
            },
        )
        assert back.status_code == 302, back.text[:300]
        signed_in = http.get(back.headers["location"])
    assert 'action="/device"' in signed_in.text, signed_in.text[:500]
    return signed_in


def _device_approve(http: httpx.Client, page: httpx.Response, user_code: str) -> httpx.Response:
    confirm = http.post(
        "/device", data={"interaction": hidden_interaction(page.text), "user_code": user_code}
    )
    assert 'action="/device/decision"' in confirm.text, confirm.text[:500]
    return http.post(
        "/device/decision",
        data={"interaction": hidden_interaction(confirm.text), "decision": "approve"},
    )


def test_device_tokens_carry_the_level_of_the_approving_sign_in(server: Server) -> None:
    """acr, amr and auth_time flow from the approving sign-in into the ID token, the access
    token and introspection, as for the code flow."""
    with httpx.Client() as setup:
        secret, _codes = _enrol_totp(server, setup, "devon")
    with httpx.Client(base_url=server.base) as http:
        start = _device_start(http, "tv")
        before = time.time()
        page = _device_sign_in(http, start, "devon", secret)
        assert "Device connected" in _device_approve(http, page, start["user_code"]).text
        tokens = _device_poll(http, "tv", start["device_code"])
        assert tokens.status_code == 200, tokens.text
        id_token = _claims(tokens.json()["id_token"])
        access = _claims(tokens.json()["access_token"])
        for claims in (id_token, access):
            assert (claims["acr"], claims["amr"]) == (MFA, ["pwd", "otp"])
            assert before - 2 <= claims["auth_time"] <= time.time()
        introspected = http.post(
            "/introspect",
            auth=("web", server.secrets["web"]),
            data={"token": tokens.json()["access_token"]},
        ).json()
        assert introspected["active"]
        assert (introspected["acr"], introspected["amr"]) == (MFA, ["pwd", "otp"])


def test_device_requests_honour_acr_values_and_the_client_minimum(server: Server) -> None:
    with httpx.Client(base_url=server.base) as http:
        # acr_values the password-only vera cannot reach: met as far as they can be (as on
        # /authorize), and the tokens say how far.
        start = _device_start(http, "tv", acr_values=MFA)
        page = _device_sign_in(http, start, "vera")
        assert "Device connected" in _device_approve(http, page, start["user_code"]).text
        tokens = _device_poll(http, "tv", start["device_code"]).json()
        assert (_claims(tokens["id_token"])["acr"], _claims(tokens["id_token"])["amr"]) == (
            PWD,
            ["pwd"],
        )
        # A client minimum vera cannot reach: refused, and the device hears access_denied.
        strict = _device_start(http, "tv-strict")
        page = http.get(f"/device?user_code={strict['user_code']}")
        refused = http.post(
            "/device",
            data={"interaction": hidden_interaction(page.text), "user_code": strict["user_code"]},
        )
        assert refused.status_code == 403
        assert "requires a second factor" in refused.text
        denied = _device_poll(http, "tv-strict", strict["device_code"])
        assert (denied.status_code, denied.json()["error"]) == (400, "access_denied")
        too_long = http.post(
            "/device_authorization", data={"client_id": "tv", "acr_values": "x" * 300}
        )
        assert (too_long.status_code, too_long.json()["error"]) == (400, "invalid_request")

    # kit has an app and a passkey, signed in with the app: a passkey-only client's code asks
    # for the passkey before the approval page (the browser test does the ceremony).
    with httpx.Client() as setup:
        secret, _codes = _enrol_totp(server, setup, "kit")

    async def add_passkey(stores: StoreSet) -> None:
        user = await stores.users.by_username("kit")
        assert user is not None
        await stores.passkeys.add(PasskeyCredential("a2l0", user.user_id, b"cose", 0, 1.0))

    server.change_stores(add_passkey)
    with httpx.Client(base_url=server.base) as http:
        start = _device_start(http, "tv-keys")
        page = _device_sign_in(http, start, "kit", secret)
        asked = http.post(
            "/device",
            data={"interaction": hidden_interaction(page.text), "user_code": start["user_code"]},
        )
        assert asked.status_code == 200
        assert 'action="/login/passkey"' in asked.text
        assert 'action="/login/totp"' not in asked.text  # the app is not enough here
        assert "This needs a passkey." in asked.text
        pending = _device_poll(http, "tv-keys", start["device_code"])
        assert pending.json()["error"] == "authorization_pending"


def test_an_authenticator_secret_that_does_not_open_fails_closed(server: Server) -> None:
    """A tampered row (or a changed master key): the code page says the app cannot be used and
    what to do, with a 4xx, and a recovery code still signs the user in."""
    with httpx.Client() as setup:
        secret, codes = _enrol_totp(server, setup, "uma")

    async def tamper(stores: StoreSet) -> None:
        user = await stores.users.by_username("uma")
        assert user is not None
        factor = await stores.totp_factors.get(user.user_id)
        assert factor is not None
        flipped = factor.sealed_secret[:-1] + bytes([factor.sealed_secret[-1] ^ 1])
        await stores.totp_factors.put(replace(factor, sealed_secret=flipped))

    server.change_stores(tamper)
    with httpx.Client() as http:
        pkce = Pkce.new()
        factor = _password(server, http, _authorize(server, http, pkce), "uma")
        assert 'action="/login/totp"' in factor.text
        refused = http.post(
            f"{server.base}/login/totp",
            data={
                "interaction": hidden_interaction(factor.text),
                "code": pyotp.TOTP(secret).at(time.time() + 30),
            },
        )
        assert refused.status_code == 409, refused.text[:500]
        assert "cannot be used to sign in right now" in refused.text
        assert "recovery code" in refused.text
        assert "Traceback" not in refused.text
        done = http.post(
            f"{server.base}/login/totp",
            data={"interaction": hidden_interaction(refused.text), "code": codes[0]},
        )
        assert _claims(_tokens(server, http, done, pkce)["access_token"])["acr"] == MFA
