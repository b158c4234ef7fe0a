"""The monitor inside the authorization server: usage of its own API, events from the AS,
automatic responses, and the next request refused because of them."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.monitor.serving import PASSWORD, monitored_server
from tests.server.flows import REDIRECT_URI, Pkce, authorize_params, hidden_interaction
from tokenward.core.events import ALLOW, DENY, AuthEvent, UsageEvent

pytestmark = pytest.mark.anyio


def usage_events(server: object) -> list[UsageEvent]:
    buffer = server.services.monitor.buffer  # type: ignore[attr-defined]
    queued = buffer.take(10_000)  # the middleware queues plain tuples of UsageEvent's fields
    return [
        UsageEvent(*e) if isinstance(e, tuple) else e
        for e in queued
        if not isinstance(e, AuthEvent)
    ]


async def test_api_requests_become_usage_events(clock: FrozenClock) -> None:
    async with monitored_server(clock) as server:
        token = await server.token()
        assert (await server.hello(token, ip="198.51.100.4")).status_code == 200
        await server.at("198.51.100.4").get("/api/hello")  # no token
        scoped = await server.token(scope="write")
        await server.hello(scoped, ip="198.51.100.4")  # valid, lacks scope read
        await server.hello("not.a.jwt", ip="198.51.100.4")
        ok, missing, scope, bad = usage_events(server)
    assert (ok.decision, ok.reason, ok.status, ok.ip) == (ALLOW, "ok", 200, "198.51.100.4")
    assert ok.sub == "service"
    assert ok.client_id == "service"
    assert ok.jti
    assert ok.route == "/api/hello"
    assert (missing.decision, missing.reason, missing.jti) == (DENY, "missing_token", None)
    assert (scope.reason, scope.status, scope.sub) == ("insufficient_scope", 403, "service")
    assert (bad.reason, bad.jti) == ("invalid_token", None)


async def test_token_endpoint_and_pages_emit_no_usage_events(clock: FrozenClock) -> None:
    async with monitored_server(clock) as server:
        await server.token()
        await server.at("192.0.2.1").get("/jwks")
        assert usage_events(server) == []


async def test_ip_spread_auto_revokes_the_token_and_the_next_call_fails(
    clock: FrozenClock,
) -> None:
    settings = {"ip_spread": {"max_networks": 2, "response": "revoke_token"}}
    async with monitored_server(clock, **settings) as server:
        token = await server.token()
        other = await server.token()
        for ip in ("198.51.100.1", "203.0.113.1"):
            assert (await server.hello(token, ip=ip)).status_code == 200
        await server.services.monitor.drain()
        assert server.services.monitor.alerts.recent() == []
        assert (await server.hello(token, ip="192.0.2.77")).status_code == 200  # third network
        await server.services.monitor.drain()  # the detector fires and revokes the jti
        [alert] = server.services.monitor.alerts.recent()
        assert alert.detector == "ip_spread"
        assert alert.responses[0]["action"] == "revoke_token"
        refused = await server.hello(token, ip="198.51.100.1")
        assert refused.status_code == 401
        assert "revoked" in refused.headers["www-authenticate"]
        assert (await server.hello(other)).status_code == 200  # only that token
        [line] = [x for x in server.audit_lines() if x["event"] == "security_alert"]
        assert line["target"]["jti"] == alert.target.jti


async def test_rate_spike_revokes_the_subject(clock: FrozenClock) -> None:
    settings = {
        "rate": {
            "min_requests": 15,
            "factor": 3,
            "response": "revoke_subject",
            "per_token": False,
            "warmup_buckets": 1,
        }
    }
    async with monitored_server(clock, **settings) as server:
        token = await server.token()
        for _ in range(3):  # a quiet minute: 3 calls
            await server.hello(token)
            clock.advance(20)
        for _ in range(15):
            assert (await server.hello(token)).status_code == 200
        await server.services.monitor.drain()
        [alert] = server.services.monitor.alerts.recent()
        assert alert.key == "sub:service"
        clock.advance(1)
        assert (await server.hello(token)).status_code == 401
        assert (await server.hello(await server.token())).status_code == 200  # new tokens work


async def test_failure_burst_blocks_the_address_at_the_as(clock: FrozenClock) -> None:
    settings = {"failures": {"threshold": 5, "block_seconds": 60}}
    async with monitored_server(clock, **settings) as server:
        attacker = server.at("203.0.113.66")
        for i in range(5):
            await attacker.get("/api/hello", headers={"authorization": f"Bearer x{i}.y.z"})
        await server.services.monitor.drain()
        assert server.services.monitor.is_blocked("203.0.113.66")
        token_call = await attacker.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("service", server.secret)
        )
        assert token_call.status_code == 403
        assert token_call.json()["error"] == "access_denied"
        assert (await attacker.get("/api/hello")).status_code == 403
        assert (await attacker.get("/admin/login")).status_code == 200  # the console stays
        assert (await server.hello(await server.token())).status_code == 200  # others unaffected
        clock.advance(61)
        assert (await attacker.get("/jwks")).status_code == 200


async def test_failed_sign_ins_count_toward_a_burst(clock: FrozenClock) -> None:
    settings = {"failures": {"threshold": 4, "response": "alert"}}
    async with monitored_server(clock, **settings) as server:
        browser = server.at("198.51.100.200")
        page = await browser.get("/authorize", params=authorize_params(Pkce.new()))
        for _ in range(4):
            page = await browser.post(
                "/login",
                data={
                    "interaction": hidden_interaction(page.text),
                    "username": "alice",
                    "password": "wrong password",
                },
            )
            assert page.status_code == 401
        await server.services.monitor.drain()
        [alert] = server.services.monitor.alerts.recent()
        assert alert.detector == "failures"
        assert alert.target.ip == "198.51.100.200"
        assert "sign-ins" in alert.explanation
        assert "wrong password" not in server.audit.getvalue()  # passwords never reach the log


async def sign_in(server: object, ip: str) -> dict[str, str]:
    from tests.server.flows import query_of

    browser = server.at(ip)  # type: ignore[attr-defined]
    pkce = Pkce.new()
    page = await browser.get("/authorize", params=authorize_params(pkce))
    response = await browser.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    if 'action="/consent"' in response.text:
        response = await browser.post(
            "/consent",
            data={"interaction": hidden_interaction(response.text), "decision": "approve"},
        )
    code = query_of(response.headers["location"])["code"]
    tokens = await browser.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier,
        },
        auth=("web", server.web_secret),  # type: ignore[attr-defined]
    )
    result: dict[str, str] = tokens.json()
    return result


async def test_refresh_token_reuse_reaches_the_monitor(clock: FrozenClock) -> None:
    settings = {"refresh_reuse": {"response": "revoke_subject"}}
    async with monitored_server(clock, **settings) as server:
        tokens = await sign_in(server, "198.51.100.10")
        web = ("web", server.web_secret)
        data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        first = await server.at("198.51.100.10").post("/token", data=data, auth=web)
        assert first.status_code == 200
        clock.advance(60)  # past the grace: a second use is reuse
        thief = await server.at("203.0.113.9").post("/token", data=data, auth=web)
        assert thief.json()["error"] == "invalid_grant"
        await server.services.monitor.drain()
        [alert] = server.services.monitor.alerts.recent()
        assert alert.detector == "refresh_reuse"
        assert alert.target.ip == "203.0.113.9"
        assert alert.target.sub is not None
        assert alert.responses[0]["action"] == "revoke_subject"
        assert (await server.hello(first.json()["access_token"])).status_code == 401


async def test_token_used_after_logout_raises_session_ended(clock: FrozenClock) -> None:
    async with monitored_server(clock, session_ended={"grace": 5}) as server:
        tokens = await sign_in(server, "198.51.100.10")
        assert (await server.hello(tokens["access_token"])).status_code == 200
        clock.advance(2)
        logout = await server.at("198.51.100.10").get(
            "/logout", params={"id_token_hint": tokens["id_token"]}
        )
        assert logout.status_code == 200
        clock.advance(30)
        refused = await server.hello(tokens["access_token"], ip="203.0.113.50")
        assert refused.status_code == 401
        await server.services.monitor.drain()
        [alert] = server.services.monitor.alerts.recent()
        assert alert.detector == "session_ended"
        assert alert.target.ip == "203.0.113.50"
        assert alert.target.sid
        assert "and was refused" in alert.explanation


async def test_monitoring_off_installs_nothing(clock: FrozenClock) -> None:
    async with monitored_server(clock, enabled=False) as server:
        await server.hello(await server.token())
        assert len(server.services.monitor.buffer) == 0


async def test_userinfo_is_watched_too(clock: FrozenClock) -> None:
    async with monitored_server(clock) as server:
        tokens = await sign_in(server, "198.51.100.10")
        server.services.monitor.buffer.take(10_000)
        answer = await server.at("198.51.100.10").get(
            "/userinfo", headers={"authorization": f"Bearer {tokens['access_token']}"}
        )
        assert answer.status_code == 200
        [event] = usage_events(server)
    assert event.route == "/userinfo"
    assert event.sub == answer.json()["sub"]
    assert event.sid is not None
