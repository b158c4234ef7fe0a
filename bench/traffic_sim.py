"""A labelled traffic simulator: weeks of normal gateway traffic plus injected attacks.

Normal traffic: `users` people, each with a home and an office network in their city, one or
two devices (user agents), one or two of the deployment's client applications, the routes
their job uses, the records they work on, and a daily rhythm (a working day with a lunch dip,
some evenings, rarely a weekend). Benign surprises keep the detectors honest: business trips
(a new network in another city, hours after the last request), new phones, late evenings,
expired tokens, a wrong route now and then, and service clients whose nightly batch jobs burst
to hundreds of requests a minute.

Attacks (each an `Incident`: scenario, target kind and value, start and end):
stolen token (the victim's live token replayed from a new network and device), credential
stuffing (one address trying forged or stolen tokens, fast or slow), scraping (an account
walking through every record), privilege probing (an account trying admin routes, refused),
off-hours access (the victim's account at night from a new device), slow exfiltration (an
export route round the clock at a low rate) and impossible travel (the same subject on another
continent minutes later).

Everything comes from one `random.Random(seed)`: the same seed gives the same trace.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tokenward.core.events import ALLOW, DENY, UsageEvent

START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
DAY = 86_400.0
CITIES = {
    "paris": (48.86, 2.35),
    "lyon": (45.76, 4.84),
    "berlin": (52.52, 13.40),
    "madrid": (40.42, -3.70),
    "london": (51.51, -0.13),
    "milan": (45.46, 9.19),
    "new_york": (40.71, -74.01),
    "singapore": (1.35, 103.82),
    "sao_paulo": (-23.55, -46.63),
    "sydney": (-33.87, 151.21),
}
HOME_CITIES = ("paris", "lyon", "berlin", "madrid", "london", "milan")
FAR_CITIES = ("new_york", "singapore", "sao_paulo", "sydney")
USER_ROUTES = ("orders", "invoices", "customers", "products", "reports", "tickets", "stock")
ADMIN_ROUTES = ("admin_users", "admin_keys", "admin_billing")
EXPORT_ROUTE = "export"
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) Safari/17.2",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1) Mobile Safari/604.1",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) Chrome/131.0 Mobile",
    "okhttp/4.12.0",
)
ATTACK_AGENTS = ("python-requests/2.32.3", "curl/8.10.1", "Go-http-client/2.0", "Wget/1.24.5")
SCENARIOS = (
    "stolen_token",
    "credential_stuffing",
    "scraping",
    "privilege_probing",
    "off_hours",
    "slow_exfiltration",
    "impossible_travel",
)


@dataclass(frozen=True, slots=True)
class Incident:
    scenario: str
    kind: str  # "sub" or "ip": what an alert must name to have caught it
    value: str
    start: float
    end: float


@dataclass
class User:
    sub: str
    city: str
    networks: list[str]  # home, office
    agents: list[str]
    clients: list[str]
    routes: list[str]
    records: list[int]
    start_hour: float
    evening: float  # chance of an evening session on a work day
    weekend: float


@dataclass
class Trace:
    events: list[UsageEvent]
    incidents: list[Incident]
    places: dict[str, tuple[float, float]]  # network (/24) -> (latitude, longitude)
    users: list[User] = field(default_factory=list)

    def locate(self, ip: str) -> tuple[float, float] | None:
        return self.places.get(_net(ip))


def _net(ip: str) -> str:
    """The /24 of a simulated IPv4 address (all are), as the scorer's network keys read."""
    return ip.rsplit(".", 1)[0] + ".0/24"


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[UsageEvent] = []
        self.places: dict[str, tuple[float, float]] = {}
        self._next_net = 0
        self._jti = 0

    def network(self, city: str) -> str:
        """A fresh /24 in `city` (from 100.64.0.0/10, shared address space: never routed)."""
        self._next_net += 1
        n = self._next_net
        net = f"100.{64 + (n >> 8) % 64}.{n & 255}"
        self.places[_net(net + ".1")] = CITIES[city]
        return net  # three octets: addresses are net + ".<host>"

    def jti(self) -> str:
        self._jti += 1
        return f"j{self._jti:07d}"

    def emit(
        self,
        when: float,
        *,
        jti: str | None,
        sub: str | None,
        client: str | None,
        route: str,
        path: str,
        ip: str,
        agent: str,
        status: int = 200,
        reason: str = "ok",
        sid: str | None = None,
    ) -> None:
        self.events.append(
            UsageEvent(
                time=round(when, 3),
                jti=jti,
                sub=sub,
                client_id=client,
                route=route,
                ip=ip,
                user_agent=agent,
                status=status,
                decision=ALLOW if status < 400 else DENY,
                reason=reason,
                sid=sid,
                source="gateway",
                path=path,
            )
        )


def _path(route: str, record: int | None) -> str:
    return f"/api/{route}" if record is None else f"/api/{route}/{record}"


def _make_users(b: _Builder, count: int, clients: list[str]) -> list[User]:
    rng = b.rng
    users = []
    for i in range(count):
        city = rng.choice(HOME_CITIES)
        users.append(
            User(
                sub=f"user{i:04d}",
                city=city,
                networks=[b.network(city), b.network(city)],
                agents=rng.sample(AGENTS[:5], rng.choice((1, 1, 2))),
                clients=rng.sample(clients, rng.choice((1, 1, 2))),
                routes=rng.sample(USER_ROUTES, rng.randint(2, 5)),
                records=rng.sample(range(1, 100_000), rng.randint(15, 60)),
                start_hour=rng.uniform(7.0, 10.0),
                evening=rng.uniform(0.0, 0.25),
                weekend=rng.uniform(0.0, 0.2),
            )
        )
    return users


def _session(
    b: _Builder,
    user: User,
    when: float,
    *,
    ip: str,
    agent: str,
    minutes: float,
    pace: float = 90.0,
    fresh_records: float = 0.02,
) -> tuple[str, float, str]:
    """One sign-in and its requests; returns the token, when the session ended, the client."""
    rng = b.rng
    jti = b.jti()
    client = rng.choice(user.clients)
    sid = f"s{jti}"
    t = when
    end = when + minutes * 60.0
    while t < end:
        route = rng.choice(user.routes)
        if rng.random() < fresh_records:
            record = rng.randint(1, 100_000)
            user.records.append(record)
        else:
            record = rng.choice(user.records)
        status, reason = 200, "ok"
        roll = rng.random()
        if roll < 0.004:
            status, reason = 401, "expired"
        elif roll < 0.006:
            status, reason = 404, "ok"
        elif roll < 0.007:  # a route this user's token lacks the scope for
            route, status, reason = rng.choice(USER_ROUTES), 403, "insufficient_scope"
        b.emit(
            t,
            jti=jti if status != 401 else None,
            sub=user.sub if status != 401 else None,
            client=client if status != 401 else None,
            route=route,
            path=_path(route, record if rng.random() < 0.8 else None),
            ip=ip,
            agent=agent,
            status=status,
            reason=reason,
            sid=sid if status != 401 else None,
        )
        t += rng.expovariate(1.0 / pace)
    return jti, t, client


def _normal_day(b: _Builder, user: User, day: int, trips: dict[str, tuple[int, str]]) -> None:
    rng = b.rng
    base = START + day * DAY
    weekday = day % 7 < 5
    trip = trips.get(user.sub)
    on_trip = trip is not None and trip[0] <= day < trip[0] + 3
    if not weekday and rng.random() > user.weekend:
        return
    if on_trip and trip is not None:
        # A business trip: hotel network in another home city, the usual laptop.
        _session(
            b,
            user,
            base + 3600 * rng.uniform(8, 10),
            ip=f"{trip[1]}.{rng.randint(2, 250)}",
            agent=user.agents[0],
            minutes=rng.uniform(20, 60),
        )
        return
    office = user.networks[1] + f".{rng.randint(2, 250)}"
    home = user.networks[0] + f".{rng.randint(2, 250)}"
    start = base + 3600 * (user.start_hour + rng.uniform(-0.5, 0.5))
    if weekday:
        _, end, _ = _session(
            b, user, start, ip=office, agent=user.agents[0], minutes=rng.uniform(60, 180)
        )
        afternoon = max(end, base + 3600 * (user.start_hour + 4.5 + rng.uniform(0, 1)))
        _session(b, user, afternoon, ip=office, agent=user.agents[0], minutes=rng.uniform(60, 150))
    if rng.random() < (user.evening if weekday else 1.0):
        _session(
            b,
            user,
            base + 3600 * rng.uniform(19.0, 22.0),
            ip=home,
            agent=user.agents[-1],
            minutes=rng.uniform(10, 40),
            pace=120.0,
        )


def _service_traffic(b: _Builder, days: int, services: list[str]) -> None:
    """Machine clients: steady polling by day, a burst at the same hour every night."""
    rng = b.rng
    for client in services:
        net = b.network(rng.choice(HOME_CITIES))
        batch_hour = rng.uniform(1.0, 4.0)
        for day in range(days):
            base = START + day * DAY
            jti = b.jti()
            t = base + 3600 * 8
            while t < base + 3600 * 18:
                b.emit(
                    t,
                    jti=jti,
                    sub=client,
                    client=client,
                    route="stock",
                    path="/api/stock",
                    ip=f"{net}.10",
                    agent="tokenward-sdk/1.0",
                )
                t += rng.uniform(100, 140)
            jti = b.jti()
            t = base + 3600 * batch_hour
            for _ in range(rng.randint(400, 600)):  # the nightly job: ~8 requests a second
                b.emit(
                    t,
                    jti=jti,
                    sub=client,
                    client=client,
                    route="reports",
                    path="/api/reports",
                    ip=f"{net}.10",
                    agent="tokenward-sdk/1.0",
                )
                t += rng.uniform(0.05, 0.2)


def simulate(
    *,
    users: int = 300,
    days: int = 21,
    seed: int = 7,
    attacks_per_scenario: int = 6,
    warmup_days: int = 7,
    services: int = 6,
) -> Trace:
    """`warmup_days` of normal traffic come before the first attack (profiles learn first)."""
    b = _Builder(seed)
    rng = b.rng
    clients = [f"app{i}" for i in range(12)]
    people = _make_users(b, users, clients)
    trips = {}
    for user in rng.sample(people, max(1, users // 10)):
        other = rng.choice([c for c in HOME_CITIES if c != user.city])
        trips[user.sub] = (rng.randrange(2, days), b.network(other))
    for user in people:
        # A new phone some day for one in ten: a new agent from then on.
        switch = rng.randrange(2, days) if rng.random() < 0.1 else days
        for day in range(days):
            if day == switch:
                user.agents.append(AGENTS[3 + rng.randrange(2)])
            _normal_day(b, user, day, trips)
    _service_traffic(b, days, [f"svc{i}" for i in range(services)])
    incidents = _attacks(b, people, days, warmup_days, attacks_per_scenario)
    b.events.sort(key=lambda e: e.time)
    return Trace(b.events, incidents, b.places, people)


def _attack_time(rng: random.Random, days: int, warmup: int, hour: tuple[float, float]) -> float:
    day = rng.randrange(warmup, days)
    while day % 7 >= 5:  # attacks on working days, when the victims are around
        day = rng.randrange(warmup, days)
    return START + day * DAY + 3600 * rng.uniform(*hour)


def _attacks(b: _Builder, people: list[User], days: int, warmup: int, per: int) -> list[Incident]:
    rng = b.rng
    incidents: list[Incident] = []
    victims = rng.sample(people, per * 6)
    for i in range(per):
        incidents.append(_stolen_token(b, victims[6 * i], days, warmup))
        incidents.append(_stuffing(b, days, warmup, fast=i % 3 == 0))
        incidents.append(_scraping(b, victims[6 * i + 1], days, warmup))
        incidents.append(_probing(b, victims[6 * i + 2], days, warmup))
        incidents.append(_off_hours(b, victims[6 * i + 3], days, warmup))
        incidents.append(_exfiltration(b, victims[6 * i + 4], days, warmup))
        incidents.append(_travel(b, victims[6 * i + 5], days, warmup))
    return incidents


def _stolen_token(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    """The victim works as usual; their token is replayed from elsewhere within the hour."""
    rng = b.rng
    start = _attack_time(rng, days, warmup, (9.0, 16.0))
    office = user.networks[1] + ".77"
    jti, _, client = _session(b, user, start, ip=office, agent=user.agents[0], minutes=30)
    thief_net = b.network(rng.choice(HOME_CITIES))
    agent = rng.choice(ATTACK_AGENTS)
    t = start + rng.uniform(300, 1500)
    begin = t
    for _ in range(rng.randint(15, 40)):  # at the victim's own pace, on the victim's routes
        route = rng.choice(user.routes)
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=client,
            route=route,
            path=_path(route, rng.choice(user.records)),
            ip=f"{thief_net}.9",
            agent=agent,
            sid=f"s{jti}",
        )
        t += rng.uniform(10, 60)
    return Incident("stolen_token", "sub", user.sub, begin, t)


def _stuffing(b: _Builder, days: int, warmup: int, *, fast: bool) -> Incident:
    rng = b.rng
    net = b.network(rng.choice(FAR_CITIES))
    ip = f"{net}.66"
    start = _attack_time(rng, days, warmup, (0.0, 23.0))
    t = start
    agent = rng.choice(ATTACK_AGENTS)
    for _ in range(rng.randint(150, 400)):
        route = rng.choice(USER_ROUTES)
        b.emit(
            t,
            jti=None,
            sub=None,
            client=None,
            route=route,
            path=_path(route, None),
            ip=ip,
            agent=agent,
            status=401,
            reason="invalid_token",
        )
        t += rng.uniform(0.2, 1.0) if fast else rng.uniform(4.0, 12.0)
    return Incident("credential_stuffing", "ip", ip, start, t)


def _scraping(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    rng = b.rng
    start = _attack_time(rng, days, warmup, (10.0, 15.0))
    jti = b.jti()
    t = start
    ip = user.networks[1] + ".31"
    first = rng.randint(1, 50_000)
    route = rng.choice(user.routes)
    for n in range(rng.randint(300, 700)):  # every record in turn, a few a minute
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=user.clients[0],
            route=route,
            path=_path(route, first + n),
            ip=ip,
            agent=user.agents[0],
            sid=f"s{jti}",
        )
        t += rng.uniform(3.0, 9.0)
    return Incident("scraping", "sub", user.sub, start, t)


def _probing(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    rng = b.rng
    start = _attack_time(rng, days, warmup, (10.0, 16.0))
    jti = b.jti()
    t = start
    ip = user.networks[1] + ".45"
    for _ in range(rng.randint(8, 20)):
        route = rng.choice(ADMIN_ROUTES)
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=user.clients[0],
            route=route,
            path=_path(route, rng.randint(1, 20)),
            ip=ip,
            agent=user.agents[0],
            status=403,
            reason="policy_denied",
            sid=f"s{jti}",
        )
        t += rng.uniform(5.0, 40.0)
    return Incident("privilege_probing", "sub", user.sub, start, t)


def _off_hours(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    """The victim's account at 2-4 a.m. from a new device on the victim's home network."""
    rng = b.rng
    start = _attack_time(rng, days, warmup, (2.0, 4.0))
    ip = user.networks[0] + ".200"
    agent = rng.choice(ATTACK_AGENTS)
    jti = b.jti()
    t = start
    for _ in range(rng.randint(10, 30)):
        route = rng.choice(user.routes)
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=user.clients[0],
            route=route,
            path=_path(route, rng.choice(user.records)),
            ip=ip,
            agent=agent,
            sid=f"s{jti}",
        )
        t += rng.uniform(10.0, 60.0)
    return Incident("off_hours", "sub", user.sub, start, t)


def _exfiltration(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    """An export route the user never calls, one record every few minutes for a day."""
    rng = b.rng
    start = _attack_time(rng, days - 1, warmup, (0.0, 23.0))
    ip = user.networks[1] + ".99"
    t = start
    jti = b.jti()
    n = rng.randint(1, 50_000)
    end = start + DAY
    while t < end:
        if t - start > 3000:  # tokens last an hour: the malware refreshes
            jti, start = b.jti(), t
        n += 1
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=user.clients[0],
            route=EXPORT_ROUTE,
            path=_path(EXPORT_ROUTE, n),
            ip=ip,
            agent=user.agents[0],
            sid=f"s{jti}",
        )
        t += rng.uniform(120.0, 360.0)
    return Incident("slow_exfiltration", "sub", user.sub, end - DAY, end)


def _travel(b: _Builder, user: User, days: int, warmup: int) -> Incident:
    """The user works from the office; minutes later the same account is on another continent."""
    rng = b.rng
    start = _attack_time(rng, days, warmup, (9.0, 16.0))
    _session(b, user, start, ip=user.networks[1] + ".12", agent=user.agents[0], minutes=20)
    far = b.network(rng.choice(FAR_CITIES))
    t = start + 1200 + rng.uniform(60, 900)
    begin = t
    jti = b.jti()
    for _ in range(rng.randint(5, 15)):
        route = rng.choice(user.routes)
        b.emit(
            t,
            jti=jti,
            sub=user.sub,
            client=user.clients[0],
            route=route,
            path=_path(route, rng.choice(user.records)),
            ip=f"{far}.5",
            agent=user.agents[0],
            sid=f"s{jti}",
        )
        t += rng.uniform(10.0, 60.0)
    return Incident("impossible_travel", "sub", user.sub, begin, t)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 12_742.0 * math.asin(math.sqrt(h))
