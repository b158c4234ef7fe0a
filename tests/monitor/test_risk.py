"""The learned risk detector: each attack scenario of the simulator is caught, every alert
explains itself and names its action, and state stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from bench.p10_risk import evaluate, match, settings_for
from bench.traffic_sim import SCENARIOS, simulate
from tests.conftest import FrozenClock
from tokenward.core.events import ALLOW, DENY, UsageEvent
from tokenward.deploy.monitor_replay import replay_monitor
from tokenward.monitor.config import RiskSettings
from tokenward.monitor.replay import EventClock, replay
from tokenward.monitor.risk import (
    Assessment,
    RiskBoard,
    RiskDetector,
    RiskScorer,
    hour_of_day,
    network_key,
)


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    # Small and seeded: 40 users, 10 days, two attacks of each kind after 5 days of learning.
    return simulate(users=40, days=10, seed=3, attacks_per_scenario=2, warmup_days=5, services=2)


def test_every_scenario_is_caught_by_the_learned_detector(trace) -> None:  # type: ignore[no-untyped-def]
    score = asyncio.run(evaluate(trace, "learned"))
    for scenario in SCENARIOS:
        assert score.recall(trace.incidents, scenario) == 1.0, scenario
    # Most alerts are about an incident (the full-size figure is P10 in `make bench`).
    assert score.precision > 0.8


def test_rules_miss_what_the_learned_detector_catches(trace) -> None:  # type: ignore[no-untyped-def]
    rules = asyncio.run(evaluate(trace, "rules"))
    assert rules.recall(trace.incidents) < 0.5
    assert rules.recall(trace.incidents, "stolen_token") == 0.0


def test_alerts_explain_and_name_their_action(trace) -> None:  # type: ignore[no-untyped-def]
    clock = EventClock()
    monitor = replay_monitor(settings_for("learned"), clock, trace)

    async def alerts() -> list:  # type: ignore[type-arg]
        return [alert async for alert in replay(monitor, clock, trace.events)]

    found = asyncio.run(alerts())
    assert found
    by_scenario: dict[str, list] = {}  # type: ignore[type-arg]
    for alert in found:
        assert alert.detector == "risk"
        assert alert.evidence["score"] >= 0.9
        assert alert.evidence["reasons"], "the top features are the explanation"
        assert "Response: " in alert.explanation
        assert alert.responses
        assert alert.responses[0]["action"] in ("step_up", "revoke_token", "block_ip", "alert")
        for i in match(alert, trace.incidents):
            by_scenario.setdefault(trace.incidents[i].scenario, []).append(alert)

    def features(scenario: str) -> set[str]:
        return {name for alert in by_scenario[scenario] for name in alert.evidence["features"]}

    assert "token_moved" in features("stolen_token")
    assert "travel" in features("impossible_travel")
    assert "forbidden" in features("privilege_probing")
    assert "new_paths" in features("scraping")
    # A score about an address alone climbs to blocking it; the alert says so.
    blocks = [
        a for a in by_scenario["credential_stuffing"] if a.responses[0]["action"] == "block_ip"
    ]
    assert blocks
    assert "blocked for" in blocks[0].responses[0]["done"]


def _event(when: float, sub: str | None, ip: str, **extra: object) -> UsageEvent:
    fields: dict[str, object] = {
        "time": when, "jti": extra.pop("jti", "t1" if sub else None), "sub": sub,
        "client_id": "web" if sub else None, "route": "orders", "ip": ip,
        "user_agent": "ua", "status": 200, "decision": ALLOW, "reason": "ok",
        "path": "/api/orders",
    }  # fmt: skip
    fields.update(extra)
    return UsageEvent(**fields)  # type: ignore[arg-type]


def test_profiles_are_bounded_least_recently_seen_first() -> None:
    scorer = RiskScorer(RiskSettings(enabled=True, max_entities=100))
    for n in range(250):
        scorer.assess(_event(1000.0 + n, f"user{n}", f"192.0.2.{n % 200}", jti=f"t{n}"))
    assert len(scorer.subjects) == 100
    assert scorer.subjects.evicted == 150
    assert scorer.subjects.get("user249") is not None
    assert scorer.subjects.get("user0") is None


def test_a_token_moving_to_a_new_network_and_device_scores_high_from_the_first_request() -> None:
    scorer = RiskScorer(RiskSettings(enabled=True))
    first = scorer.assess(_event(1000.0, "alice", "192.0.2.1"))
    assert first.score < 0.5  # cold start: nothing known, nothing alarming
    moved = scorer.assess(_event(1060.0, "alice", "203.0.113.9", user_agent="curl/8"))
    assert moved.score >= 0.95
    assert moved.reasons[0].startswith("token t1 moved to network 203.0.113.0/24")


def test_failures_from_one_address_are_scored_against_the_address() -> None:
    scorer = RiskScorer(RiskSettings(enabled=True))
    last = None
    for n in range(30):
        last = scorer.assess(
            _event(
                1000.0 + n * 5,
                None,
                "198.51.100.7",
                status=401,
                decision=DENY,
                reason="invalid_token",
            )
        )
    assert isinstance(last, Assessment)
    assert (last.kind, last.value) == ("ip", "198.51.100.7")
    assert last.score >= 0.95


def test_the_board_feeds_context_risk_for_the_hold_time() -> None:
    clock = FrozenClock()
    settings = RiskSettings(enabled=True, hold=60)
    board = RiskBoard(settings.hold, 1000, clock)
    detector = RiskDetector(settings, RiskScorer(settings), board)
    asyncio.run(detector.observe(_event(clock.now, "alice", "192.0.2.1")))

    class Token:
        sub = "alice"

    assert board.score(Token(), "192.0.2.1", "orders") == 0
    findings = asyncio.run(
        detector.observe(_event(clock.now + 1, "alice", "203.0.113.9", user_agent="curl/8"))
    )
    assert [f.response for f in findings] == ["step_up"]
    assert board.score(Token(), "192.0.2.1", "orders") >= 90
    assert board.rows()[0]["value"] == "alice"
    assert board.rows()[0]["reasons"]
    clock.advance(61)
    assert board.score(Token(), "192.0.2.1", "orders") == 0


def test_half_space_trees_model_scores_in_unit_range() -> None:
    scorer = RiskScorer(RiskSettings(enabled=True, model="hst"))
    scores = [scorer.assess(_event(1000.0 + n, "bob", "192.0.2.1")).score for n in range(300)]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_helpers() -> None:
    assert network_key("192.0.2.77") == "192.0.2.0/24"
    assert network_key("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_key("::ffff:192.0.2.1") == "192.0.2.0/24"
    assert hour_of_day(3600 * 25 + 5) == 1
