"""P10: the learned risk detector against the fixed rules, on labelled simulated traffic.

`bench.traffic_sim` writes weeks of normal traffic with injected attacks; both detector sets
see the same events through the same path as `tokenward monitor replay` (the live `Monitor`,
event-time clock, in-memory stores). An alert is a true positive when it names an incident's
target (subject or address) between the incident's start and ten minutes after its end; an
incident is caught when at least one alert does. Also measured: CPU per event of the learned
scoring (what the monitor's task spends per request; nothing is added to the request itself).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from bench.harness import Figure, load_note
from bench.traffic_sim import SCENARIOS, Incident, Trace, simulate
from tokenward.deploy.monitor_replay import replay_monitor
from tokenward.monitor.alerts import Alert
from tokenward.monitor.config import MonitorSettings, RiskSettings
from tokenward.monitor.replay import EventClock, replay, target_of
from tokenward.monitor.risk import Flag, RiskBoard

SLACK = 600.0
RiskModel = Literal["novelty", "hst"]  # RiskSettings.model
RULES = ("ip_spread", "rate", "refresh_reuse", "failures", "session_ended")


@dataclass
class Score:
    alerts: int = 0
    true_alerts: int = 0
    caught: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    seconds: float = 0.0
    events: int = 0
    false: list[Alert] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 0.0

    def recall(self, incidents: list[Incident], scenario: str | None = None) -> float:
        wanted = [i for i, inc in enumerate(incidents) if scenario in (None, inc.scenario)]
        hit = set().union(*self.caught.values()) if self.caught else set()
        return sum(1 for i in wanted if i in hit) / len(wanted) if wanted else 0.0


def settings_for(kind: str, model: RiskModel = "novelty") -> MonitorSettings:
    base = MonitorSettings(max_alerts=100_000)
    if kind == "learned":
        off = {name: getattr(base, name).model_copy(update={"enabled": False}) for name in RULES}
        risk = RiskSettings(enabled=True, model=model)
        return base.model_copy(update={**off, "risk": risk})
    return base


def match(alert: Alert, incidents: list[Incident]) -> list[int]:
    kind, value = target_of(alert)
    target = alert.target
    names = {(kind, value), ("sub", target.sub or ""), ("ip", target.ip or "")}
    found = []
    for i, incident in enumerate(incidents):
        if (incident.kind, incident.value) in names and (
            incident.start - 1 <= alert.time <= incident.end + SLACK
        ):
            found.append(i)
    return found


async def evaluate(trace: Trace, kind: str, model: RiskModel = "novelty") -> Score:
    clock = EventClock()
    monitor = replay_monitor(settings_for(kind, model), clock, trace)
    score = Score(events=len(trace.events))
    started = time.process_time()
    async for alert in replay(monitor, clock, trace.events):
        score.alerts += 1
        hits = match(alert, trace.incidents)
        if hits:
            score.true_alerts += 1
            for i in hits:
                score.caught[trace.incidents[i].scenario].add(i)
        else:
            score.false.append(alert)
    score.seconds = time.process_time() - started
    return score


def _line(name: str, score: Score, incidents: list[Incident]) -> str:
    per = ", ".join(f"{s} {score.recall(incidents, s):.2f}" for s in SCENARIOS)
    return (
        f"  {name}: precision {score.precision:.3f} ({score.true_alerts}/{score.alerts} alerts), "
        f"recall {score.recall(incidents):.3f}; per scenario recall: {per}"
    )


def run() -> list[Figure]:
    users = int(os.environ.get("P10_USERS", "300"))
    days = int(os.environ.get("P10_DAYS", "21"))
    trace = simulate(users=users, days=days, seed=int(os.environ.get("P10_SEED", "7")))
    print(
        f"  trace: {len(trace.events)} events, {users} users, {days} days, "
        f"{len(trace.incidents)} incidents"
    )
    runs: tuple[tuple[str, str, RiskModel], ...] = (
        ("learned (novelty)", "learned", "novelty"),
        ("learned (hst)", "learned", "hst"),
        ("rules", "rules", "novelty"),
    )
    results = {name: asyncio.run(evaluate(trace, kind, model)) for name, kind, model in runs}
    for name, score in results.items():
        print(_line(name, score, trace.incidents))
        for alert in score.false[:5]:
            print(f"    false: {alert.detector} {alert.key} {alert.explanation[:160]}")
    learned, rules = results["learned (novelty)"], results["rules"]
    per_event = learned.seconds / learned.events
    lookup = _lookup_cost()
    return [
        Figure(
            "P10",
            learned.precision,
            f"precision of the learned risk detector, recall {learned.recall(trace.incidents):.2f}"
            f" over {len(trace.incidents)} incidents of 7 scenarios; rules: precision "
            f"{rules.precision:.2f}, recall {rules.recall(trace.incidents):.2f}; hst: precision "
            f"{results['learned (hst)'].precision:.2f}, recall "
            f"{results['learned (hst)'].recall(trace.incidents):.2f}; monitor task "
            f"{per_event * 1e6:.1f} µs CPU per event (whole pipeline, off the request path); "
            f"context.risk lookup {lookup * 1e6:.2f} µs per request on the request path; "
            f"{load_note()}",
        )
    ]


def _lookup_cost() -> float:
    """What the request path pays: `RiskBoard.score` for a route whose policies read it."""
    board = RiskBoard(3600.0, 100_000, time.time)
    for n in range(10_000):
        board.flag(f"sub:user{n}", Flag(0.95, time.time(), (), "step_up"))

    class Token:
        sub = "user42"

    token = Token()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(100_000):
            board.score(token, "192.0.2.1", "orders")
        samples.append((time.perf_counter() - started) / 100_000)
    return statistics.median(samples)
