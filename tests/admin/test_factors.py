"""Second factors in the console and the admin API: an operator sees which factors a user has
and resets them (a lost phone), and sets a client's minimum sign-in level. Audited like every
admin action."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.admin.conftest import Console
from tests.admin.test_api import admin_token
from tests.conftest import FrozenClock
from tests.monitor.serving import Monitored
from tests.monitor.test_server import sign_in as oauth_sign_in
from tokenward.core.assurance import MFA, PHR
from tokenward.core.records import PasskeyCredential

pytestmark = pytest.mark.anyio


async def _alice_with_factors(server: Monitored) -> str:
    factors = server.services.second_factors
    alice = await server.services.stores.users.by_username("alice")
    assert alice is not None
    enrolment = factors.totp.start("alice")
    assert await factors.totp.confirm(
        alice.user_id, enrolment.secret, pyotp.TOTP(enrolment.secret).at(server.services.clock())
    )
    await factors.recovery.issue(alice.user_id)
    await server.services.stores.passkeys.add(
        PasskeyCredential("cred-1", alice.user_id, b"cose", 0, 1.0, name="phone")
    )
    return alice.user_id


async def _refused_everywhere(server: Monitored, user_id: str, tokens: dict[str, str]) -> None:
    """After a reset: no session of the user left, the access and refresh tokens refused."""
    sessions = await server.services.stores.sessions.for_user(user_id)
    assert sessions
    assert all(session.ended_at is not None for session in sessions)
    assert (await server.hello(tokens["access_token"])).status_code == 401
    refreshed = await server.at("198.51.100.10").post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=("web", server.web_secret),
    )
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"


async def test_factors_listed_and_reset_over_the_api(server: Monitored, clock: FrozenClock) -> None:
    tokens = await oauth_sign_in(server, "198.51.100.10")  # signed in before the phone was lost
    user_id = await _alice_with_factors(server)
    assert (await server.hello(tokens["access_token"])).status_code == 200
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    listed = await http.get(f"/admin/api/users/{user_id}/factors", headers=auth)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["totp"], body["recovery_codes_left"]) == (True, 10)
    assert [(p["id"], p["name"]) for p in body["passkeys"]] == [("cred-1", "phone")]
    assert "secret" not in listed.text
    assert "cose" not in listed.text
    users = (await http.get("/admin/api/users", headers=auth)).json()
    assert [(u["totp"], u["passkeys"]) for u in users if u["user_id"] == user_id] == [(True, 1)]

    clock.advance(1)  # revocation counts tokens issued before this second
    reset = await http.delete(f"/admin/api/users/{user_id}/factors", headers=auth)
    assert reset.status_code == 200, reset.text
    body = reset.json()
    assert (body["user_id"], body["factors_removed"]) == (user_id, 2)
    assert [(r["kind"], r["value"]) for r in body["revoked"]] == [("sub", user_id)]
    await _refused_everywhere(server, user_id, tokens)
    after = (await http.get(f"/admin/api/users/{user_id}/factors", headers=auth)).json()
    assert (after["totp"], after["recovery_codes_left"], after["passkeys"]) == (False, 0, [])
    assert (await http.get("/admin/api/users/nobody/factors", headers=auth)).status_code == 404
    assert (await http.delete("/admin/api/users/nobody/factors", headers=auth)).status_code == 400
    assert (await http.get(f"/admin/api/users/{user_id}/factors")).status_code == 401


async def test_client_min_acr_over_the_api(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    changed = await http.put("/admin/api/clients/web/min-acr", json={"min_acr": PHR}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["min_acr"] == PHR
    stored = await server.services.stores.clients.get("web")
    assert stored is not None
    assert stored.min_acr == PHR
    wrong = await http.put("/admin/api/clients/web/min-acr", json={"min_acr": "gold"}, headers=auth)
    assert wrong.status_code == 400
    assert "min_acr must be one of" in wrong.text
    cleared = await http.put("/admin/api/clients/web/min-acr", json={"min_acr": None}, headers=auth)
    assert cleared.json()["min_acr"] is None
    created = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "bank",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://bank.example/cb"],
            "min_acr": MFA,
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert created.json()["min_acr"] == MFA


async def test_console_shows_and_resets_factors(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    tokens = await oauth_sign_in(server, "198.51.100.10")
    user_id = await _alice_with_factors(server)
    page = await console.get("/admin/users")
    assert "1 passkey" in page.text
    assert "Reset factors" in page.text
    clock.advance(1)
    done = await console.post("/admin/users", op="reset_factors", user_id=user_id)
    assert done.status_code == 200, done.text[:500]
    assert "Second factors removed and the user signed out everywhere" in done.text
    await _refused_everywhere(server, user_id, tokens)
    summary = await server.services.second_factors.catalogue.summary(user_id)
    assert (summary.totp, summary.passkeys) == (False, ())


async def test_an_admin_with_an_app_signs_in_to_the_console_with_its_code(
    server: Monitored,
) -> None:
    factors = server.services.second_factors
    root = await server.services.stores.users.by_username("root")
    assert root is not None
    enrolment = factors.totp.start("root")
    totp = pyotp.TOTP(enrolment.secret)
    now = server.services.clock()
    assert await factors.totp.confirm(root.user_id, enrolment.secret, totp.at(now))
    console = Console(server.at("192.0.2.201"))
    refused = await console.sign_in()  # the password alone
    assert refused.status_code == 401
    assert "not right" in refused.text
    wrong = await console.sign_in(code="000000")
    assert wrong.status_code == 401
    signed_in = await console.sign_in(code=totp.at(now + 30))
    assert signed_in.status_code == 303, re.findall(r"role=\"alert\">([^<]+)", signed_in.text)
    assert (await console.get("/admin/dashboard")).status_code == 200
    replayed = await Console(server.at("192.0.2.202")).sign_in(code=totp.at(now + 30))
    assert replayed.status_code == 401
    assert "already used" in replayed.text


async def test_console_sets_a_client_minimum(server: Monitored, console: Console) -> None:
    page = await console.get("/admin/clients")
    assert 'aria-label="Minimum sign-in for web"' in page.text
    done = await console.post("/admin/clients", op="min_acr", client_id="web", min_acr=PHR)
    assert done.status_code == 200, done.text[:300]
    assert "minimum sign-in is changed" in done.text
    stored = await server.services.stores.clients.get("web")
    assert stored is not None
    assert stored.min_acr == PHR
    await console.post("/admin/clients", op="min_acr", client_id="web", min_acr="")
    cleared = await server.services.stores.clients.get("web")
    assert cleared is not None
    assert cleared.min_acr is None
