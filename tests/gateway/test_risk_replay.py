"""Learned risk through a real gateway: a fixed labelled trace sent over HTTP raises the same
alerts live as `tokenward monitor replay` raises from the gateway's audit log, and a high
score reaches the route's Cedar policies as `context.risk` (an RFC 9470 step-up challenge)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import FrozenClock
from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.test_policy_examples import example
from tokenward.deploy.monitor_wiring import build_monitor, build_risk_board
from tokenward.monitor.config import MonitorSettings, RiskSettings
from tokenward.monitor.pipeline import Monitor
from tokenward.monitor.replay import alert_line, parse_audit_line
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.memory_flows import MemorySessionStore

TOKENWARD = str(Path(sys.executable).parent / "tokenward")
DAY = 86_400
START = 1_799_625_600  # Monday 2027-01-11 00:00 UTC
CONFIG = """
trust:
  issuer: {{issuer}}
  audience: {{audience}}
trusted_proxies: [127.0.0.1/32]
routes:
  - {{{{name: items, prefix: /items, upstreams: ["{{upstream}}"], auth: bearer, scopes: [read]}}}}
  - {{{{name: admin, prefix: /admin, upstreams: ["{{upstream}}"], auth: bearer, scopes: [admin]}}}}
  - name: pay
    prefix: /pay
    upstreams: ["{{upstream}}"]
    auth: bearer
    policies:
      files: [{policy}]
"""
STEP_UP_ON_RISK = example("risky-needs-fresh-mfa")  # docs/policies.md
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


@dataclass(frozen=True)
class Step:
    """One request of the trace and its label (the scenario it belongs to, or "normal")."""

    at: int
    who: str | None  # subject whose token is sent; None: a forged token
    ip: str
    path: str
    label: str = "normal"
    agent: str = FIREFOX


def labelled_trace() -> list[Step]:
    steps: list[Step] = []
    homes = {"alice": "198.51.100.10", "bob": "198.51.100.20"}
    for day in range(3):  # three working days of habits
        for n in range(20):
            for who, ip in homes.items():
                at = START + day * DAY + 9 * 3600 + n * 90 + (30 if who == "bob" else 0)
                steps.append(Step(at, who, ip, f"/items/{n % 7}"))
    attack = START + 3 * DAY + 10 * 3600
    for n in range(5):
        steps.append(Step(attack + n * 60, "alice", homes["alice"], f"/items/{n}"))
    for n in range(6):  # alice's token, replayed from elsewhere with another client
        steps.append(
            Step(
                attack + 400 + n * 40, "alice", "203.0.113.9", "/items/1", "stolen_token", "curl/8"
            )
        )
    for n in range(30):  # forged tokens from one address
        steps.append(Step(attack + 900 + n * 3, None, "192.0.2.66", "/items", "stuffing", "curl/8"))
    for n in range(6):  # bob tries admin routes his token has no scope for
        steps.append(Step(attack + 1200 + n * 20, "bob", homes["bob"], f"/admin/{n}", "probing"))
    return sorted(steps, key=lambda step: step.at)


def live_monitor(clock: FrozenClock) -> Monitor:
    settings = MonitorSettings(audit_log="off", risk=RiskSettings(enabled=True))
    return build_monitor(
        settings,
        revocations=MemoryRevocationStore(),
        sessions=MemorySessionStore(),
        keep=DAY,
        clock=clock,
        blocklist=MemoryBlocklist(clock),
        risk_board=build_risk_board(settings, clock),
    )


def send(
    running: Running,
    clock: FrozenClock,
    mint: Callable[..., str],
    step: Step,
    tokens: dict[tuple[str, int], str],
) -> httpx.Response:
    clock.now = float(step.at)
    headers = {"x-forwarded-for": step.ip, "user-agent": step.agent}
    if step.who is None:
        headers["authorization"] = "Bearer eyJhbGciOiJFUzI1NiJ9.e30.AAAA"
    else:
        key = (step.who, step.at // 600)  # a token lives ten minutes: one per window
        if key not in tokens:
            tokens[key] = mint(subject=step.who, session_id=f"s-{step.who}-{key[1]}")
        headers["authorization"] = f"Bearer {tokens[key]}"
    return running.http.get(step.path, headers=headers)


def drain(monitor: Monitor, expected: int) -> None:
    """What the monitor's task does, once the gateway has emitted the request's event."""
    deadline = time.monotonic() + 5
    while monitor.buffer.received < expected:
        assert time.monotonic() < deadline, "the gateway never emitted the event"
        time.sleep(0.002)
    asyncio.run(monitor.drain())


def comparable(line: dict[str, Any]) -> tuple[Any, ...]:
    return (
        line["detector"],
        line["target"]["kind"],
        line["target"]["value"],
        round(line["time"], 3),
        line["score"],
        [r["action"] for r in line["responses"]],
    )


def test_replay_of_the_audit_log_raises_the_alerts_raised_live(
    gateway: GatewayFactory,
    clock: FrozenClock,
    mint: Callable[..., str],
    tmp_path: Path,
) -> None:
    policy = tmp_path / "pay.cedar"
    policy.write_text(STEP_UP_ON_RISK)
    monitor = live_monitor(clock)
    board = monitor.detectors[-1].board  # type: ignore[attr-defined]
    running = gateway(CONFIG.format(policy=policy), usage=monitor, risk=board)
    tokens: dict[tuple[str, int], str] = {}
    trace = labelled_trace()
    statuses = []
    for sent, step in enumerate(trace, 1):
        statuses.append(send(running, clock, mint, step, tokens).status_code)
        drain(monitor, sent)
    assert statuses.count(401) == 30  # the forged tokens
    assert statuses.count(403) == 6  # the admin routes

    live = [alert_line(alert) for alert in reversed(monitor.alerts.recent(1000))]
    caught = {(line["target"]["kind"], line["target"]["value"]) for line in live}
    assert caught == {("sub", "alice"), ("ip", "192.0.2.66"), ("sub", "bob")}
    assert all(line["detector"] == "risk" and line["explanation"] for line in live)

    # alice's score is in the policy context now: her next payment needs a fresh MFA.
    clock.now += 5
    refused = running.http.get(
        "/pay/1", headers={"authorization": f"Bearer {mint(subject='alice')}"}
    )
    assert refused.status_code == 401
    assert 'error="insufficient_user_authentication"' in refused.headers["www-authenticate"]
    carol = running.http.get("/pay/1", headers={"authorization": f"Bearer {mint(subject='carol')}"})
    assert carol.status_code == 200  # nothing known against her

    audit = tmp_path / "audit.jsonl"
    lines = running.audit.getvalue().splitlines()[: len(trace)]
    audit.write_bytes(b"\n".join(lines) + b"\n")
    first = parse_audit_line(lines[0])
    assert first is not None
    assert (first.path, first.user_agent, first.sub) == ("/items/0", FIREFOX, "alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_MONITOR_")}
    replayed = subprocess.run(
        [TOKENWARD, "monitor", "replay", str(audit)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    offline = [orjson.loads(line) for line in replayed.stdout.splitlines()]
    assert [comparable(line) for line in offline] == [comparable(line) for line in live]
    assert replayed.stderr.strip().endswith(f"{len(live)} alerts")
