"""What the risk scorer remembers about each entity: a subject, a client, a token, a network.

A `Profile` is a handful of bounded counters (networks, user agents, routes and paths seen,
an hour-of-week histogram, decaying rates of requests, failures and refusals, the last place
it was seen). `Profiles` keeps them in one LRU map of at most `capacity` entries: the least
recently seen entity goes first, so memory is bounded whatever the traffic.

Scaled out, profiles are partitioned by entity rather than shared: every request reads and
updates four profiles, and four Redis round trips per request would cost more than scoring it.
Each process scores what it sees; a deployment that runs several scoring processes routes one
subject to one of them (docs/monitoring.md, "Risk scoring").
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

HOURS = 24  # hour of day (UTC): two weeks teach a day's rhythm, not a week's
MAX_SET = 64  # distinct networks, agents, routes per profile; the least used go first
MAX_PATHS = 512
MAX_PEOPLE = 8  # subjects remembered per hour of a client: more tells nothing new


def _bump(table: dict[str, int], key: str, limit: int) -> int:
    """Count `key`; returns how often it was seen before. Past `limit` keys the least
    counted one is forgotten (a bounded sketch of what is usual)."""
    seen = table.get(key, 0)
    if not seen and len(table) >= limit:
        del table[min(table, key=table.__getitem__)]
    table[key] = seen + 1
    return seen


@dataclass(slots=True)
class Rate:
    """An exponentially decaying count: `value` ≈ events in the last `half_life`·1.44 s."""

    half_life: float
    value: float = 0.0
    at: float = 0.0

    def add(self, now: float, n: float = 1.0) -> float:
        self.value = self.peek(now) + n
        self.at = max(self.at, now)
        return self.value

    def peek(self, now: float) -> float:
        if now <= self.at:
            return self.value
        return self.value * math.pow(0.5, (now - self.at) / self.half_life)


@dataclass(slots=True)
class Profile:
    first_seen: float
    kind: str = "entity"
    last_seen: float = 0.0
    requests: int = 0
    networks: dict[str, int] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    hours: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    # Which subjects were active at each hour (a few each: enough to tell a habit of many
    # users from one account's, which an attack on that account would be).
    people: list[set[str]] = field(default_factory=lambda: [set() for _ in range(HOURS)])
    # Short and long request rates: their ratio is burstiness against the entity's own normal.
    fast: Rate = field(default_factory=lambda: Rate(300.0))
    slow: Rate = field(default_factory=lambda: Rate(6 * 3600.0))
    failures: Rate = field(default_factory=lambda: Rate(1800.0))
    forbidden: Rate = field(default_factory=lambda: Rate(1800.0))
    new_paths: Rate = field(default_factory=lambda: Rate(300.0))
    new_routes: Rate = field(default_factory=lambda: Rate(3600.0))
    off_hours: Rate = field(default_factory=lambda: Rate(3600.0))
    recent_networks: dict[str, float] = field(default_factory=dict)  # network -> last seen
    last_place: tuple[float, float] | None = None
    last_place_at: float = 0.0
    last_network: str | None = None
    flagged: float = 0.0  # the latest score, for the console and the policy context
    flagged_at: float = 0.0
    reasons: tuple[str, ...] = ()

    def hour_count(self, hour: int) -> float:
        """Requests at this hour of day, the neighbouring hours counting half (habits drift)."""
        return (
            self.hours[hour]
            + 0.5 * self.hours[(hour - 1) % HOURS]
            + 0.5 * self.hours[(hour + 1) % HOURS]
        )

    def people_near(self, hour: int) -> int:
        """Distinct subjects seen at this hour of day or the next or previous one."""
        return len(
            self.people[hour] | self.people[(hour - 1) % HOURS] | self.people[(hour + 1) % HOURS]
        )

    def saw(self, subject: str, hour: int) -> None:
        seen = self.people[hour]
        if len(seen) < MAX_PEOPLE:
            seen.add(subject)

    def hour_share(self, hour: int) -> float:
        """How usual this hour of day is for the entity: its share of the entity's requests."""
        total = sum(self.hours)
        return self.hour_count(hour) / total if total > 0 else 0.0

    def concurrent_networks(self, now: float, window: float = 600.0) -> int:
        stale = [key for key, when in self.recent_networks.items() if now - when > window]
        for key in stale:
            del self.recent_networks[key]
        return len(self.recent_networks)

    def note(self, network: str, now: float) -> None:
        self.recent_networks[network] = now
        if len(self.recent_networks) > MAX_SET:
            del self.recent_networks[
                min(self.recent_networks, key=self.recent_networks.__getitem__)
            ]


class Profiles:
    """Profiles of one kind of entity, least recently seen evicted past `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Profile] = OrderedDict()
        self.evicted = 0

    def get(self, key: str) -> Profile | None:
        return self._items.get(key)

    def touch(self, key: str, now: float) -> Profile:
        profile = self._items.get(key)
        if profile is None:
            profile = self._items[key] = Profile(first_seen=now)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self.evicted += 1
        else:
            self._items.move_to_end(key)
        return profile

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, Profile]]:
        return list(self._items.items())


def bump(table: dict[str, int], key: str, limit: int = MAX_SET) -> int:
    return _bump(table, key, limit)
