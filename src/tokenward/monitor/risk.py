"""Learned risk: every request scored 0-1 against what its subject, token, client and network
usually do, with the features that drove the score as its explanation.

Features are novelties measured per entity (`profiles.Profile`), each in [0, 1]:

| feature | what it measures |
| --- | --- |
| `token_moved` | this token, seen before, now from a network and a device it never used |
| `travel` | the subject's previous place is farther than 1000 km/h could have brought it |
| `new_network` | a network this subject never used (unknown to everyone: more) |
| `new_agent` | a user agent this subject never used (unknown to its client's users: more) |
| `odd_hour` | an hour of the day the subject (and its client's users) are never active at |
| `night_volume` | requests at such hours in the last hour or so (sustained, not one late call) |
| `new_route` | a route the subject never called, rare among all subjects |
| `new_paths` | paths the subject never requested, per hour, far above its own habit |
| `forbidden` | 403 refusals of this subject in the last half hour |
| `failures` | failed validations from this network in the last half hour |

Two models turn them into a score, chosen by measurement (`make bench ONLY=P10`):
`novelty` (the default) combines them as independent evidence, `1 - Π(1 - wᵢ·fᵢ)`, so one
unusual thing (a new phone, a business trip) stays below the alert threshold and two
together, or one that never happens innocently (a token moving, impossible travel), cross it;
`hst` feeds the same features to river's Half-Space Trees, which learns the joint density
online. Entities without history are scored against population baselines: the client's users
for hours and agents, every subject for routes, every network for networks.

Everything here runs on the monitor's task, off the request path; `RiskBoard` answers the
policy context (`context.risk`, 0-100) and the console from memory.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tokenward.core.events import (
    ALLOW,
    VALIDATION_FAILURES,
    Event,
    UsageEvent,
)
from tokenward.monitor.alerts import Finding, Target
from tokenward.monitor.config import RiskSettings
from tokenward.monitor.profiles import HOURS, MAX_PATHS, Profile, Profiles, bump

WARM_REQUESTS = 40  # a subject is judged against its own history from here on
WARM_SECONDS = 2 * 86_400.0
WEIGHTS = {
    "token_moved": 0.97,
    "travel": 0.97,
    "new_network": 0.6,
    "new_agent": 0.75,
    "odd_hour": 0.75,
    "night_volume": 0.75,
    "new_route": 0.75,
    "new_paths": 0.97,
    "forbidden": 0.9,
    "failures": 0.97,
}
FEATURES = tuple(WEIGHTS)
FORBIDDEN = frozenset({403})
EARTH_KM = 12_742.0
# Poisoning guard: what scores this high is not learned as a habit (hours, routes, networks,
# agents), so an attack that goes on for hours does not teach the profile that it is normal.
LEARN_BELOW = 0.7
# An hour is usual for a client's users when this many of them were ever active near it: an
# attack on one account (or two) does not make the night usual for everyone.
POPULATION_HOUR = 3.0


class Locator(Protocol):
    def locate(self, ip: str) -> tuple[float, float] | None:
        """(latitude, longitude) of an address, or None when unknown."""
        ...


@dataclass(frozen=True, slots=True)
class Assessment:
    score: float
    kind: str  # "sub" or "ip": whom the score is about
    value: str
    features: dict[str, float]
    reasons: tuple[str, ...]  # the top contributions, most first, as sentences


class Model(Protocol):
    def score(self, features: dict[str, float]) -> float: ...

    def learn(self, features: dict[str, float]) -> None: ...


class NoveltyModel:
    """Independent evidence: 1 - Π(1 - wᵢ·fᵢ)."""

    def score(self, features: dict[str, float]) -> float:
        keep = 1.0
        for name, value in features.items():
            keep *= 1.0 - WEIGHTS[name] * value
        return 1.0 - keep

    def learn(self, features: dict[str, float]) -> None:
        """The profiles learn; the combination is fixed."""


class HalfSpaceModel:
    """river's Half-Space Trees over the feature vector (features are already in [0, 1])."""

    def __init__(self, seed: int = 7) -> None:
        from river import anomaly  # noqa: PLC0415 - river is the `risk` extra

        self._model = anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, seed=seed)

    def score(self, features: dict[str, float]) -> float:
        return float(self._model.score_one(features))  # type: ignore[no-untyped-call]

    def learn(self, features: dict[str, float]) -> None:
        self._model.learn_one(features)  # type: ignore[no-untyped-call]


def build_model(name: str) -> Model:
    if name == "hst":
        return HalfSpaceModel()
    return NoveltyModel()


def hour_of_day(when: float) -> int:
    return int(when // 3600 % HOURS)


def network_key(ip: str) -> str:
    """IPv4 /24, IPv6 /48: the unit a person moves between (home, office, carrier)."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return EARTH_KM * math.asin(math.sqrt(min(1.0, h)))


class RiskScorer:
    """Scores each usage event, then learns from it. One instance per process."""

    def __init__(
        self, settings: RiskSettings, locator: Locator | None = None, model: Model | None = None
    ) -> None:
        self.settings = settings
        self._locator = locator
        self.model = model if model is not None else build_model(settings.model)
        capacity = settings.max_entities
        self.subjects = Profiles(capacity)
        self.tokens = Profiles(capacity)
        self.clients = Profiles(max(100, capacity // 10))
        self.networks = Profiles(capacity)
        self._route_subjects: dict[str, int] = {}  # how many subjects ever used each route
        self._networks: dict[str, str] = {}  # address -> network, parsing costs more than this
        self.scored = 0

    def _network(self, ip: str) -> str:
        cache = self._networks
        key = cache.get(ip)
        if key is None:
            if len(cache) >= 100_000:
                cache.clear()
            key = cache[ip] = network_key(ip)
        return key

    def assess(self, event: UsageEvent, count: int = 1) -> Assessment:
        now = event.time
        net = self._network(event.ip)
        network = self.networks.touch(net, now)
        features = self._features(event, net, network, now)
        score = self.model.score(features) if features else 0.0
        self.model.learn(features)
        self._learn(event, net, network, now, count, habit=score < LEARN_BELOW)
        self.scored += count
        kind, value = ("sub", event.sub) if event.sub is not None else ("ip", event.ip)
        reasons = _reasons(features, event, net)
        return Assessment(round(score, 4), kind, value, features, reasons)

    # --- features ----------------------------------------------------------------------
    def _features(
        self, event: UsageEvent, net: str, network: Profile, now: float
    ) -> dict[str, float]:
        f: dict[str, float] = dict.fromkeys(FEATURES, 0.0)
        if event.sub is None:
            if event.reason in VALIDATION_FAILURES:
                f["failures"] = _ramp(network.failures.peek(now) + 1, 5.0, 25.0)
            return f
        subject = self.subjects.get(event.sub)
        client = self.clients.get(event.client_id) if event.client_id else None
        agent = event.user_agent or "-"
        self._movement(f, event, net, agent, subject, now)
        if subject is not None and _warm(subject, now):
            self._habits(f, event, net, network, agent, subject, client, now)
        elif client is None or agent not in client.agents:
            # Cold start: no history of this subject yet, so the population's stands in.
            f["new_agent"] = 0.5 if network.requests == 0 else 0.0
        if event.status in FORBIDDEN:
            seen = subject.forbidden.peek(now) if subject is not None else 0.0
            f["forbidden"] = _ramp(seen + 1, 1.0, 4.0)
        return f

    def _movement(
        self,
        f: dict[str, float],
        event: UsageEvent,
        net: str,
        agent: str,
        subject: Profile | None,
        now: float,
    ) -> None:
        token = self.tokens.get(event.jti) if event.jti else None
        if token is not None and token.requests > 0 and net not in token.networks:
            f["token_moved"] = 1.0 if agent not in token.agents else 0.3
        if subject is None or subject.last_place is None or self._locator is None:
            return
        place = self._locator.locate(event.ip)
        if place is not None:
            km = distance_km(subject.last_place, place)
            hours = max(now - subject.last_place_at, 60.0) / 3600.0
            if km > 500 and km / hours > 1000:
                f["travel"] = 1.0

    def _habits(
        self,
        f: dict[str, float],
        event: UsageEvent,
        net: str,
        network: Profile,
        agent: str,
        subject: Profile,
        client: Profile | None,
        now: float,
    ) -> None:
        if net not in subject.networks:
            f["new_network"] = 1.0 if network.requests == 0 else 0.7
        if agent not in subject.agents:
            f["new_agent"] = 1.0 if client is None or agent not in client.agents else 0.7
        hour = hour_of_day(now)
        # Odd for the subject and for its client's users: an hour when others of the same
        # application work too is a habit changing, not an intrusion.
        rarity = _ramp(0.01 - subject.hour_share(hour), 0.0, 0.01)
        if client is not None and _warm(client, now):
            rarity *= _ramp(POPULATION_HOUR - client.people_near(hour), 0.0, POPULATION_HOUR)
        f["odd_hour"] = rarity
        if rarity > 0.5:
            f["night_volume"] = _ramp(subject.off_hours.peek(now) + 1, 3.0, 10.0)
        share = subject.routes.get(event.route, 0) / subject.requests
        if share < 0.05:  # new or rare for the subject, and rare among all subjects
            users = self._route_subjects.get(event.route, 0)
            rare = 1.0 - min(1.0, users / max(1.0, 0.2 * len(self.subjects)))
            f["new_route"] = rare * (1.0 - share / 0.05)
        if event.path is not None and event.path not in subject.paths:
            f["new_paths"] = _ramp(subject.new_paths.peek(now) + 1, 15.0, 45.0)

    # --- learning ----------------------------------------------------------------------
    def _learn(
        self, event: UsageEvent, net: str, network: Profile, now: float, n: int, *, habit: bool
    ) -> None:
        network.requests += n
        network.last_seen = now
        if event.reason in VALIDATION_FAILURES:
            network.failures.add(now, n)
        if event.sub is None:
            return
        agent = event.user_agent or "-"
        subject = self.subjects.touch(event.sub, now)
        hour = hour_of_day(now)
        for profile in self._learners(event, now, subject):
            profile.requests += n
            profile.last_seen = now
            profile.fast.add(now, n)
            if habit or profile.kind == "token":  # a token's own history is always kept
                bump(profile.networks, net)
                bump(profile.agents, agent)
                profile.hours[hour] += n
        if event.client_id is not None:
            client = self.clients.get(event.client_id)
            if client is not None:
                client.saw(event.sub, hour)
        if habit and not bump(subject.routes, event.route):
            self._route_subjects[event.route] = self._route_subjects.get(event.route, 0) + 1
            if len(self._route_subjects) > 4096:
                self._route_subjects.clear()
        self._learn_rates(event, subject, hour, now, n)
        place = self._locator.locate(event.ip) if self._locator is not None else None
        if place is not None and event.decision == ALLOW and habit:
            subject.last_place, subject.last_place_at = place, now
        subject.note(net, now)

    def _learn_rates(
        self, event: UsageEvent, subject: Profile, hour: int, now: float, n: int
    ) -> None:
        if event.path is not None and not bump(subject.paths, event.path, MAX_PATHS):
            subject.new_paths.add(now)
        if event.status in FORBIDDEN:
            subject.forbidden.add(now, n)
        if subject.requests > WARM_REQUESTS and subject.hour_share(hour) < 0.01:
            subject.off_hours.add(now, n)

    def _learners(self, event: UsageEvent, now: float, subject: Profile) -> list[Profile]:
        found = [subject]
        if event.client_id is not None:
            found.append(self.clients.touch(event.client_id, now))
        if event.jti is not None:
            token = self.tokens.touch(event.jti, now)
            token.kind = "token"
            found.append(token)
        return found


def _warm(profile: Profile, now: float) -> bool:
    return profile.requests >= WARM_REQUESTS and now - profile.first_seen >= WARM_SECONDS


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


_SENTENCES: dict[str, Callable[[UsageEvent, str], str]] = {
    "token_moved": lambda e, net: f"token {e.jti} moved to network {net} and a new device",
    "travel": lambda e, _n: f"{e.sub} is too far from where it just was ({e.ip})",
    "new_network": lambda e, net: f"network {net} is new for {e.sub}",
    "new_agent": lambda e, _n: f"user agent {(e.user_agent or '-')[:60]!r} is new for {e.sub}",
    "odd_hour": lambda e, _n: f"{e.sub} is never active at this hour of the day",
    "night_volume": lambda e, _n: f"{e.sub} keeps working at hours it never works",
    "new_route": lambda e, _n: f"route {e.route} is new for {e.sub} and rare among users",
    "new_paths": lambda e, _n: f"{e.sub} requests many paths it never requested before",
    "forbidden": lambda e, _n: f"{e.sub} is being refused (403) repeatedly",
    "failures": lambda e, net: f"failed validations keep coming from {net}",
}


def _reasons(features: dict[str, float], event: UsageEvent, net: str) -> tuple[str, ...]:
    ranked = sorted(
        ((WEIGHTS[name] * value, name) for name, value in features.items() if value > 0),
        reverse=True,
    )
    return tuple(
        f"{_SENTENCES[name](event, net)} ({name} {features[name]:.2f})" for _, name in ranked[:3]
    )


@dataclass(slots=True)
class Flag:
    score: float
    at: float
    reasons: tuple[str, ...]
    action: str


class RiskBoard:
    """The latest high scores per subject and address: what `context.risk` and the console
    read. A flag lasts `hold` seconds; lookups are dict reads (the request path asks)."""

    def __init__(self, hold: float, capacity: int, clock: Callable[[], float]) -> None:
        self._hold = hold
        self._capacity = capacity
        self._clock = clock
        self._flags: dict[str, Flag] = {}

    def flag(self, key: str, flag: Flag) -> None:
        previous = self._flags.pop(key, None)
        if previous is not None and self._clock() - previous.at < self._hold:
            flag.score = max(flag.score, previous.score)
        self._flags[key] = flag
        if len(self._flags) > self._capacity:
            del self._flags[next(iter(self._flags))]

    def level(self, key: str) -> float:
        flag = self._flags.get(key)
        if flag is None or self._clock() - flag.at >= self._hold:
            return 0.0
        return flag.score

    def clear(self, key: str) -> bool:
        return self._flags.pop(key, None) is not None

    def score(self, token: Any, ip: str, route: str) -> int:
        """`guard.authz.context.RiskProvider`: 0-100, the higher of subject and address."""
        level = max(self.level(f"sub:{token.sub}"), self.level(f"ip:{ip}"))
        return round(level * 100)

    def rows(self, limit: int = 100) -> list[dict[str, Any]]:
        now = self._clock()
        live = [(key, flag) for key, flag in self._flags.items() if now - flag.at < self._hold]
        live.sort(key=lambda item: item[1].score, reverse=True)
        return [
            {
                "kind": key.split(":", 1)[0],
                "value": key.split(":", 1)[1],
                "score": flag.score,
                "risk": round(flag.score * 100),
                "at": flag.at,
                "action": flag.action,
                "reasons": list(flag.reasons),
            }
            for key, flag in live[:limit]
        ]


class RiskDetector:
    """The monitor's detector for learned risk: scores, flags, and raises one finding when a
    score crosses the alert threshold, its response chosen by the highest threshold crossed."""

    name = "risk"

    def __init__(self, settings: RiskSettings, scorer: RiskScorer, board: RiskBoard) -> None:
        self.settings = settings
        self.scorer = scorer
        self.board = board

    def accepts(self, event: Event) -> bool:
        return isinstance(event, UsageEvent)

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        if not isinstance(event, UsageEvent):
            return []
        assessment = self.scorer.assess(event, count)
        settings = self.settings
        if assessment.score < min(settings.step_up_at, settings.alert_at):
            return []
        action = self.action(assessment, event)
        key = f"{assessment.kind}:{assessment.value}"
        self.board.flag(key, Flag(assessment.score, event.time, assessment.reasons, action))
        if assessment.score < settings.alert_at:
            return []
        target = (
            Target(event.jti, event.sub, event.sid, event.client_id, event.ip)
            if assessment.kind == "sub"
            else Target(ip=event.ip)
        )
        because = "; ".join(assessment.reasons) or "no single feature stands out"
        return [
            Finding(
                detector=self.name,
                # One alert per target and action level per cooldown: a score that climbs
                # from step-up to revocation raises the stronger response too.
                key=f"{key}|{action}",
                title=f"Risk {assessment.score:.2f} for {assessment.kind} {assessment.value}",
                explanation=(
                    f"Risk {assessment.score:.2f} (alert at {settings.alert_at:.2f}): {because}. "
                    f"Response: {action} ({_why(action, settings)})."
                ),
                target=target,
                evidence={
                    "score": assessment.score,
                    "features": {k: v for k, v in assessment.features.items() if v > 0},
                    "reasons": list(assessment.reasons),
                    "model": settings.model,
                    "route": event.route,
                    "path": event.path,
                },
                severity="high" if action != "alert" else "medium",
                response=action,
            )
        ]

    def action(self, assessment: Assessment, event: UsageEvent) -> str:
        """The strongest action whose threshold the score reached and that fits the target."""
        s = self.settings
        score = assessment.score
        if assessment.kind == "ip":
            return "block_ip" if score >= s.block_ip_at else "alert"
        if score >= s.revoke_at and event.jti is not None:
            return s.revoke_response
        if score >= s.step_up_at:
            return "step_up"
        return "alert"


def _why(action: str, s: RiskSettings) -> str:
    return {
        "alert": f"below every action threshold (step-up {s.step_up_at:.2f})",
        "step_up": (
            f"score ≥ {s.step_up_at:.2f}: context.risk is raised for {s.hold:g} s, and routes "
            "whose policies step up on risk answer with an RFC 9470 challenge"
        ),
        "block_ip": f"score ≥ {s.block_ip_at:.2f} for an address without a subject",
    }.get(action, f"score ≥ {s.revoke_at:.2f}")
