"""Each detector fires on the traffic it is for, stays quiet on normal traffic, and explains."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.monitor.conftest import Rig, make_rig
from tokenward.core.events import (
    DENY,
    LOGIN_FAILED,
    REFRESH_REUSE,
    REVOKED,
    AuthEvent,
)
from tokenward.core.records import SessionRecord

pytestmark = pytest.mark.anyio


def titles(rig: Rig) -> list[str]:
    return [alert.detector for alert in rig.monitor.alerts.recent()]


# --- one token from many networks -------------------------------------------------------------
async def test_ip_spread_fires_past_the_limit_of_networks(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"max_networks": 3, "window": 300})
    for i in range(3):
        await rig.feed(rig.usage(ip=f"198.51.{i}.7"))
        clock.advance(10)
    assert titles(rig) == []
    await rig.feed(rig.usage(ip="192.0.2.1"))
    [alert] = rig.monitor.alerts.recent()
    assert alert.detector == "ip_spread"
    assert alert.target.jti == "jti-1"
    assert "4 different networks within 300 s" in alert.explanation
    assert "192.0.2.0/24" in alert.explanation
    assert alert.evidence["limit"] == 3


async def test_ip_spread_is_quiet_within_one_network_and_over_time(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"max_networks": 2, "window": 60})
    # A /24 counts once (a NAT pool, a mobile carrier), and old addresses leave the window.
    await rig.feed(*(rig.usage(ip=f"198.51.100.{i}") for i in range(50)))
    for i in range(10):
        clock.advance(61)
        await rig.feed(rig.usage(ip=f"10.{i}.0.1"))
    # IPv6 addresses of one /64 are one network too.
    await rig.feed(*(rig.usage(ip=f"2001:db8::{i:x}", jti="v6") for i in range(20)))
    assert titles(rig) == []


async def test_ip_spread_by_address_counts_each_address(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"max_networks": 2, "group": "ip"})
    await rig.feed(*(rig.usage(ip=f"198.51.100.{i}") for i in range(3)))
    assert titles(rig) == ["ip_spread"]
    assert "3 different addresses" in rig.monitor.alerts.recent()[0].explanation


# --- rate far above its own baseline -----------------------------------------------------------
async def steady(rig: Rig, per_bucket: int, buckets: int, **fields: object) -> None:
    for _ in range(buckets):
        start = rig.clock.now
        for _i in range(per_bucket):
            rig.monitor.emit(rig.usage(**fields))
            rig.clock.advance(60 / per_bucket)
        await rig.monitor.drain()
        rig.clock.now = start + 60


async def test_rate_fires_on_a_spike_over_the_baseline(clock: FrozenClock) -> None:
    clock.now = 1_800_000_000 - 1_800_000_000 % 60  # bucket-aligned
    rig = make_rig(clock, rate={"factor": 5, "min_requests": 20, "per_subject": False})
    await steady(rig, 10, 6)  # baseline 10 per minute
    assert titles(rig) == []
    await rig.feed(*(rig.usage() for _ in range(49)))  # 49 < 5 times 10: still quiet
    assert titles(rig) == []
    await rig.feed(rig.usage())  # 50 in this minute
    [alert] = rig.monitor.alerts.recent()
    assert alert.detector == "rate"
    assert alert.evidence["count"] == 50
    assert alert.evidence["baseline"] == pytest.approx(10.0, abs=0.5)
    assert "50 requests in the current 60 s bucket" in alert.explanation


async def test_rate_is_quiet_on_steady_and_slowly_growing_traffic(clock: FrozenClock) -> None:
    rig = make_rig(clock, rate={"factor": 4, "min_requests": 20})
    await steady(rig, 30, 5)
    await steady(rig, 45, 5)  # 1.5 times more: normal growth
    await steady(rig, 60, 5)
    assert titles(rig) == []


async def test_rate_per_subject_spans_tokens(clock: FrozenClock) -> None:
    clock.now = 1_800_000_000 - 1_800_000_000 % 60
    rig = make_rig(clock, rate={"factor": 4, "min_requests": 30, "per_token": False})
    await steady(rig, 5, 4)
    # The same subject with many fresh tokens: no token has a history, the subject does.
    await rig.feed(*(rig.usage(jti=f"t{i}") for i in range(40)))
    [alert] = rig.monitor.alerts.recent()
    assert alert.key == "sub:alice"
    assert alert.target.jti is None
    assert alert.target.sub == "alice"


async def test_rate_never_fires_under_the_floor(clock: FrozenClock) -> None:
    rig = make_rig(clock, rate={"factor": 2, "min_requests": 100})
    await steady(rig, 1, 3)
    await rig.feed(*(rig.usage() for _ in range(99)))  # 100 times its baseline, under the floor
    assert titles(rig) == []


# --- refresh-token reuse ------------------------------------------------------------------------
async def test_refresh_reuse_event_raises_an_alert(rig: Rig) -> None:
    event = AuthEvent(
        rig.clock(),
        REFRESH_REUSE,
        "198.51.100.9",
        sub="u1",
        client_id="web",
        sid="s1",
        family_id="fam",
    )
    await rig.feed(event)
    [alert] = rig.monitor.alerts.recent()
    assert alert.detector == "refresh_reuse"
    assert alert.severity == "high"
    assert "already been rotated" in alert.explanation
    assert alert.target.sub == "u1"
    assert alert.target.ip == "198.51.100.9"


async def test_no_alert_without_reuse(rig: Rig) -> None:
    await rig.feed(*(rig.usage(jti=f"j{i}") for i in range(20)))
    assert titles(rig) == []


# --- failure bursts from one address ------------------------------------------------------------
async def test_failures_from_one_ip_fire_and_block(clock: FrozenClock) -> None:
    rig = make_rig(clock, failures={"threshold": 10, "window": 60, "block_seconds": 120})
    bad = [
        rig.usage(jti=None, sub=None, status=401, decision=DENY, reason="invalid_token")
        for _ in range(6)
    ]
    logins = [AuthEvent(clock(), LOGIN_FAILED, "203.0.113.5", username="bob") for _ in range(4)]
    await rig.feed(*bad[:5])
    assert not rig.monitor.blocklist.is_blocked("203.0.113.5")
    await rig.feed(*logins, *bad[5:])
    [alert] = rig.monitor.alerts.recent()
    assert alert.detector == "failures"
    assert "10 failed token validations and sign-ins" in alert.explanation
    assert rig.monitor.blocklist.is_blocked("203.0.113.5")
    assert alert.responses[0]["action"] == "block_ip"
    clock.advance(121)
    assert not rig.monitor.blocklist.is_blocked("203.0.113.5")


async def test_failures_spread_out_or_scope_errors_are_quiet(clock: FrozenClock) -> None:
    rig = make_rig(clock, failures={"threshold": 5, "window": 60})
    for _ in range(20):  # one failure every 15 s: never 5 in a minute
        await rig.feed(rig.usage(status=401, decision=DENY, reason="expired"))
        clock.advance(15)
    # 403 insufficient_scope is a valid token asking too much, not a failed validation.
    await rig.feed(
        *(rig.usage(status=403, decision=DENY, reason="insufficient_scope") for _ in range(20))
    )
    assert titles(rig) == []


async def test_exempt_networks_are_never_blocked(clock: FrozenClock) -> None:
    rig = make_rig(clock, failures={"threshold": 2, "exempt_networks": ["203.0.113.0/24"]})
    await rig.feed(*(rig.usage(status=401, decision=DENY, reason=REVOKED) for _ in range(2)))
    [alert] = rig.monitor.alerts.recent()
    assert "exempt" in alert.responses[0]["done"]
    assert not rig.monitor.blocklist.is_blocked("203.0.113.5")


# --- a token used after its session ended -------------------------------------------------------
async def test_token_used_after_its_session_ended(clock: FrozenClock) -> None:
    rig = make_rig(clock, session_ended={"grace": 5})
    record = SessionRecord("s1", "digest", "alice", clock() - 100, clock() + 3600)
    await rig.sessions.put(record)
    await rig.feed(rig.usage(sid="s1"))  # the session is live: fine
    await rig.sessions.end("s1", clock())
    clock.advance(2)  # in flight at sign-out: fine
    await rig.feed(rig.usage(sid="s1", status=401, decision=DENY, reason=REVOKED))
    assert titles(rig) == []
    clock.advance(60)
    await rig.feed(rig.usage(sid="s1", status=401, decision=DENY, reason=REVOKED))
    [alert] = rig.monitor.alerts.recent()
    assert alert.detector == "session_ended"
    assert "62 s after the session ended and was refused" in alert.explanation


async def test_admitted_after_session_end_is_high_severity(clock: FrozenClock) -> None:
    rig = make_rig(clock, session_ended={"grace": 0, "recheck": 1})
    await rig.sessions.put(SessionRecord("s2", "d", "alice", clock(), clock() + 3600))
    await rig.feed(rig.usage(sid="s2"))
    await rig.sessions.end("s2", clock())
    clock.advance(5)  # the cached "live" answer is rechecked after 1 s
    await rig.feed(rig.usage(sid="s2"))
    [alert] = rig.monitor.alerts.recent()
    assert alert.severity == "high"
    assert "ADMITTED" in alert.explanation


async def test_sessions_that_merely_expired_are_not_flagged(clock: FrozenClock) -> None:
    rig = make_rig(clock)
    await rig.sessions.put(SessionRecord("s3", "d", "alice", clock() - 9000, clock() - 10))
    await rig.feed(rig.usage(sid="s3"), rig.usage(sid="s3", decision=DENY, reason="expired"))
    assert titles(rig) == []


# --- alerts: deduplicated, configurable, audited ------------------------------------------------
async def test_repeats_within_the_cooldown_count_on_one_alert(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"max_networks": 1}, cooldown=300)
    await rig.feed(*(rig.usage(ip=f"198.51.{i}.1") for i in range(6)))
    [alert] = rig.monitor.alerts.recent()
    assert alert.occurrences == 5
    clock.advance(301)
    await rig.feed(rig.usage(ip="192.0.2.200"), rig.usage(ip="192.0.3.200"))
    assert len(rig.monitor.alerts.recent()) == 2


async def test_disabled_detector_is_silent(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"enabled": False, "max_networks": 1})
    await rig.feed(*(rig.usage(ip=f"198.51.{i}.1") for i in range(6)))
    assert titles(rig) == []


async def test_alerts_and_responses_are_audited_as_json(clock: FrozenClock) -> None:
    rig = make_rig(clock, ip_spread={"max_networks": 1, "response": "revoke_token"})
    await rig.feed(rig.usage(ip="198.51.1.1"), rig.usage(ip="198.51.2.1"))
    [line] = [entry for entry in rig.audit_lines() if entry["event"] == "security_alert"]
    assert line["detector"] == "ip_spread"
    assert line["level"] == "warning"
    assert line["responses"][0]["action"] == "revoke_token"
    assert line["target"]["jti"] == "jti-1"
    assert "jti-1" in rig.mirror.jtis


async def test_a_failing_detector_does_not_stop_the_others(rig: Rig) -> None:
    class Broken:
        name = "broken"

        def accepts(self, event: object) -> bool:
            return True

        async def observe(self, event: object) -> list[object]:
            raise RuntimeError("bug")

    rig.monitor.detectors.insert(0, Broken())  # type: ignore[arg-type]
    await rig.feed(AuthEvent(rig.clock(), REFRESH_REUSE, "198.51.100.9", sub="u", family_id="f"))
    assert rig.monitor.detector_errors == 1
    assert titles(rig) == ["refresh_reuse"]
