"""Each sign-in, consent and device form is good for one submission, for a few minutes: a form
sent again (the back button, a copy, a replay) shows the error page and changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import Server
from tests.server.flows import Pkce, authorize_params, hidden_interaction, query_of
from tokenward.oauth.interaction import DECISION_LIFETIME, INTERACTION_LIFETIME

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


async def _consent_form(server: Server) -> str:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    consent = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    assert 'action="/consent"' in consent.text
    return hidden_interaction(consent.text)


async def test_a_consent_form_is_used_once(server: Server) -> None:
    interaction = await _consent_form(server)
    first = await server.http.post(
        "/consent", data={"interaction": interaction, "decision": "approve"}
    )
    assert first.status_code == 302
    assert "code" in query_of(first.headers["location"])
    for decision in ("approve", "deny"):
        replay = await server.http.post(
            "/consent", data={"interaction": interaction, "decision": decision}
        )
        assert replay.status_code == 400
        assert "location" not in replay.headers
        assert "Please start again" in replay.text
        assert "already sent" in replay.text


async def test_a_sign_in_form_is_used_once(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    form = {"interaction": hidden_interaction(page.text), "username": "alice", "password": PASSWORD}
    first = await server.http.post("/login", data=form)
    assert first.status_code == 200
    replay = await server.http.post("/login", data=form)
    assert replay.status_code == 400
    assert "already sent" in replay.text
    assert "set-cookie" not in replay.headers  # no second session


async def test_a_wrong_password_gives_a_fresh_form(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    wrong = await server.http.post(
        "/login",
        data={"interaction": hidden_interaction(page.text), "username": "alice", "password": "no"},
    )
    assert wrong.status_code == 401
    retry = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(wrong.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    assert 'action="/consent"' in retry.text


async def test_a_consent_form_is_short_lived(server: Server, clock: FrozenClock) -> None:
    assert DECISION_LIFETIME <= 300 < INTERACTION_LIFETIME
    interaction = await _consent_form(server)
    clock.advance(DECISION_LIFETIME + 1)
    late = await server.http.post(
        "/consent", data={"interaction": interaction, "decision": "approve"}
    )
    assert late.status_code == 400
    assert "expired" in late.text


async def test_device_forms_are_used_once(server: Server) -> None:
    start = (
        await server.http.post(
            "/device_authorization", data={"client_id": "tv", "scope": "openid read"}
        )
    ).json()
    page = await server.http.get("/device", params={"user_code": start["user_code"]})
    entered = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    code_form = {"interaction": hidden_interaction(entered.text), "user_code": start["user_code"]}
    confirm = await server.http.post("/device", data=code_form)
    assert "Allow" in confirm.text
    again = await server.http.post("/device", data=code_form)
    assert again.status_code == 400
    assert "Please start again" in again.text
    decision = {"interaction": hidden_interaction(confirm.text), "decision": "approve"}
    assert (await server.http.post("/device/decision", data=decision)).status_code == 200
    replay = await server.http.post("/device/decision", data=decision)
    assert replay.status_code == 400
    assert "Please start again" in replay.text
