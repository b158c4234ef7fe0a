"""Traffic management for routes with `traffic:` (docs/gateway.md, "Traffic management"):
canary rules pick a group of upstreams once per request; health checks, circuit breakers and
connection limits decide which of its upstreams may take it; idempotent requests are retried
on another one within a bounded count and deadline.

Routes without `traffic:` never come here (`Proxy.forward` serves them as before), so these
features cost nothing where they are not configured.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import Message, Receive, Scope, Send

from tokenward.gateway.breaker import Breaker
from tokenward.gateway.connlimit import Slots
from tokenward.gateway.headers import Incoming
from tokenward.gateway.healthcheck import Health, HealthChecker, Target
from tokenward.gateway.model import Route, Upstream
from tokenward.gateway.proxy import (
    SMALL_BODY,
    BadGateway,
    ClientGone,
    Headers,
    Proxy,
    _head,
    _request_framing,
    request_target,
)
from tokenward.gateway.traffic_model import IDEMPOTENT, CanaryRule, TrafficPolicy
from tokenward.gateway.upstream import (
    ConnectFailed,
    Connection,
    ConnectTimeout,
    ResponseHead,
    UpstreamError,
)
from tokenward.gateway.weighted import SmoothWeighted, weights_or_none

PREFIX = "tokenward_gateway"


class TrafficRefused(UpstreamError):
    """No upstream of the chosen group may take the request now: 503, fail closed."""

    status = 503

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Member:
    """One upstream of one route, with what decides whether it may take a request."""

    __slots__ = ("breaker", "health", "label", "slots", "upstream")

    def __init__(self, route: str, upstream: Upstream, policy: TrafficPolicy) -> None:
        self.upstream = upstream
        self.label = f"{upstream.scheme}://{upstream.host_header}{upstream.base_path}"
        self.health = (
            Health(f"{route} {self.label}", policy.active, policy.passive)
            if policy.active is not None or policy.passive is not None
            else None
        )
        breaker = policy.breaker
        self.breaker = Breaker(breaker.failures, breaker.cooloff) if breaker else None
        limits = policy.limits
        self.slots = (
            Slots(limits.max_connections, limits.max_pending, limits.pending_timeout)
            if limits
            else None
        )

    def healthy(self) -> bool:
        return self.health is None or self.health.usable()

    def closed(self) -> bool:
        return self.breaker is None or self.breaker.available()

    def failed(self) -> None:
        if self.health is not None:
            self.health.failed()
        if self.breaker is not None:
            self.breaker.failure()

    def succeeded(self) -> None:
        if self.health is not None:
            self.health.succeeded()
        if self.breaker is not None:
            self.breaker.success()

    def release(self) -> None:
        if self.slots is not None:
            self.slots.give()


class Group:
    """Round robin over a group's members, like `Balancer` for routes without `traffic:`."""

    __slots__ = ("_next", "members")

    def __init__(self, members: tuple[Member, ...]) -> None:
        self.members = members
        self._next: Callable[[], int] = itertools.count().__next__

    def order(self) -> list[Member]:
        members = self.members
        start = self._next() % len(members)
        return [*members[start:], *members[:start]]


class WeightedGroup(Group):
    """Smooth weighted round robin over a group whose entries carry weights (weighted.py)."""

    __slots__ = ("_picker",)

    def __init__(self, members: tuple[Member, ...], weights: tuple[int, ...]) -> None:
        super().__init__(members)
        self._picker = SmoothWeighted(weights)

    def order(self) -> list[Member]:
        members = self.members
        start = self._picker.pick()
        return [*members[start:], *members[:start]]


def group(members: tuple[Member, ...], weights: tuple[int, ...] | None) -> Group:
    return Group(members) if weights is None else WeightedGroup(members, weights)


class RouteTraffic:
    __slots__ = ("groups", "members", "policy", "route")
    members: dict[Upstream, Member]

    def __init__(self, route: Route, policy: TrafficPolicy, old: RouteTraffic | None) -> None:
        self.route = route.name
        self.policy = policy
        # Health, breaker and limit state survive a reload that keeps those settings.
        keep = old is not None and _same_state_settings(old.policy, policy)
        members = {}
        for upstream in (*route.upstreams, *(u for _, ups in policy.groups for u in ups)):
            if upstream not in members:
                reused = old.members.get(upstream) if keep and old is not None else None
                members[upstream] = reused or Member(route.name, upstream, policy)
        self.members = members
        self.groups = {"default": group(tuple(members[u] for u in route.upstreams), route.weights)}
        weights = policy.group_weights or (None,) * len(policy.groups)
        for (name, upstreams), weighted in zip(policy.groups, weights, strict=True):
            # A URL listed twice in a group counts once, with its first entry's weight.
            first = {u: i for i, u in reversed(list(enumerate(upstreams)))}
            picked = sorted(first.values())
            self.groups[name] = group(
                tuple(members[upstreams[i]] for i in picked),
                None if weighted is None else weights_or_none(tuple(weighted[i] for i in picked)),
            )

    def choose(self, incoming: Incoming, subject: str | None) -> Group:
        """The first canary rule that matches names the group; none: the route's upstreams."""
        for rule in self.policy.canary:
            if _matches(rule, incoming, subject):
                return self.groups[rule.to]
        return self.groups["default"]


def _matches(rule: CanaryRule, incoming: Incoming, subject: str | None) -> bool:
    if rule.header is not None:
        name, wanted = rule.header, rule.value
        return any(n == name and (wanted is None or v == wanted) for n, v in incoming.headers)
    if rule.subjects is not None:
        return subject is not None and subject_bucket(rule.to, subject) < rule.subjects * 100
    return rule.percent is not None and random.random() * 100 < rule.percent  # noqa: S311


def subject_bucket(group: str, subject: str) -> int:
    """A subject's stable place in 0..9999 for a group: the same subject always lands on the
    same side, and raising the percentage only adds subjects (none moves back)."""
    digest = hashlib.blake2b(f"{group}\0{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def _same_state_settings(old: TrafficPolicy, new: TrafficPolicy) -> bool:
    return (old.active, old.passive, old.breaker, old.limits) == (
        new.active,
        new.passive,
        new.breaker,
        new.limits,
    )


class TrafficManager:
    """Every route's traffic state, rebuilt on each load, and the health checks' task."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteTraffic] = {}
        self.retries: dict[str, int] = {}
        self.checker = HealthChecker(self._targets)

    def configure(self, routes: tuple[Route, ...]) -> None:
        old = self.routes
        self.routes = {
            route.name: RouteTraffic(route, route.traffic, old.get(route.name))
            for route in routes
            if route.traffic is not None
        }
        self.checker.changed()

    def _targets(self) -> Iterator[Target]:
        for route in list(self.routes.values()):
            for upstream, member in route.members.items():
                if member.health is not None and member.health.active is not None:
                    yield upstream, member.health

    async def start(self) -> None:
        await self.checker.start()

    async def stop(self) -> None:
        await self.checker.stop()

    def collect(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(
            f"{PREFIX}_upstream_healthy",
            "1 if the upstream may take requests by its health checks, else 0",
            labels=["route", "upstream"],
        )
        breaker = GaugeMetricFamily(
            f"{PREFIX}_upstream_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            labels=["route", "upstream"],
        )
        active = GaugeMetricFamily(
            f"{PREFIX}_upstream_in_flight",
            "Requests in flight to the upstream (routes with connection limits)",
            labels=["route", "upstream"],
        )
        for name, route in list(self.routes.items()):
            for member in list(route.members.values()):
                labels = [name, member.label]
                if member.health is not None:
                    healthy.add_metric(labels, 1 if member.health.usable() else 0)
                if member.breaker is not None:
                    breaker.add_metric(labels, member.breaker.state)
                if member.slots is not None:
                    active.add_metric(labels, member.slots.in_use)
        retries = CounterMetricFamily(
            f"{PREFIX}_upstream_retries", "Requests retried on another upstream", labels=["route"]
        )
        for name, count in self.retries.copy().items():
            retries.add_metric([name], count)
        yield from (healthy, breaker, active, retries)


class Budget:
    """Retries left for one request, and the time after which none starts."""

    __slots__ = ("deadline", "left")

    def __init__(self, left: int = 0, deadline: float = 0.0) -> None:
        self.left = left
        self.deadline = deadline

    def allows(self) -> bool:
        return self.left > 0 and time.monotonic() < self.deadline


NO_RETRIES = Budget()


class Again(Exception):
    """An attempt failed in a way another upstream may be tried for."""

    def __init__(self, error: UpstreamError, spends: bool) -> None:
        self.error = error
        self.spends = spends  # a retry (counted) rather than a connection never made


class TrafficProxy:
    def __init__(self, proxy: Proxy, manager: TrafficManager) -> None:
        self.proxy = proxy
        self.manager = manager

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        incoming: Incoming,
        added: Headers,
        response_extra: Headers,
        subject: str | None,
    ) -> int:
        """As `Proxy.forward`, for a route with `traffic:`."""
        traffic = self.manager.routes.get(route.name)
        if traffic is None or traffic.policy is not route.traffic:
            # A reload changed the route under this request: it keeps the config it started
            # with, on state of its own (one request; rare).
            traffic = RouteTraffic(route, _policy(route), None)
        group = traffic.choose(incoming, subject)  # once: retries stay in the group
        method: str = scope["method"]
        retries = traffic.policy.retries
        budget, body = NO_RETRIES, None
        if retries is not None and method in IDEMPOTENT and _replayable(incoming):
            body = await _read_body(receive) if incoming.has_body else None
            budget = Budget(retries.attempts, time.monotonic() + retries.deadline)
        framing = _request_framing(incoming)
        order = group.order()  # once per request: round robin stays even under retries
        tried: set[Member] = set()
        last_error: UpstreamError | None = None
        while True:
            member = await _pick(order, tried, last_error)
            tried.add(member)
            upstream = member.upstream
            head = _head(method, request_target(scope, route, upstream), upstream, incoming)
            head.extend(added)
            head.extend(framing)
            attempt = receive if body is None else _replay(body, receive)
            may_retry = budget.allows()
            try:
                connection, response = await self._exchange(
                    member, route, method, head, attempt, incoming, may_retry
                )
            except Again as again:
                last_error = again.error
                if again.spends:
                    self._spend(budget, route.name)
                continue
            if (
                may_retry
                and retries is not None
                and response.status in retries.statuses
                and any(m not in tried and m.healthy() and m.closed() for m in order)
            ):
                connection.close()  # its answer is dropped: the next upstream answers instead
                member.release()
                self._spend(budget, route.name)
                continue
            try:
                return await self.proxy._respond(
                    upstream, route, connection, response, send, response_extra
                )
            finally:
                member.release()

    async def _exchange(
        self,
        member: Member,
        route: Route,
        method: str,
        head: Headers,
        receive: Receive,
        incoming: Incoming,
        may_retry: bool,
    ) -> tuple[Connection, ResponseHead]:
        """One attempt on `member`; its outcome feeds the health and breaker state."""
        try:
            connection, response = await self.proxy._exchange(
                member.upstream, route, method, head, receive, incoming
            )
        except (ConnectFailed, ConnectTimeout) as exc:
            member.failed()
            member.release()
            raise Again(exc, spends=False) from None  # nothing was sent: any method may go on
        except BadGateway as exc:
            # A connection closed without an answer (stale): the request may be sent again.
            # A read timeout or a broken answer is not retried: the upstream may have acted.
            member.failed()
            member.release()
            if not may_retry:
                raise
            raise Again(exc, spends=True) from None
        except UpstreamError:
            member.failed()
            member.release()
            raise
        except BaseException:
            member.release()
            raise
        if response.status >= 500:
            member.failed()
        else:
            member.succeeded()
        return connection, response

    def _spend(self, budget: Budget, route: str) -> None:
        budget.left -= 1
        self.manager.retries[route] = self.manager.retries.get(route, 0) + 1


def _policy(route: Route) -> TrafficPolicy:
    if route.traffic is None:
        raise ValueError(f"route {route.name!r} has no traffic: section")
    return route.traffic


def _replayable(incoming: Incoming) -> bool:
    """No body, or a small one of known length that is read whole before the first try and
    so can be sent again; a streamed body could have gone partly to the first upstream."""
    if not incoming.has_body:
        return True
    length = incoming.content_length
    return length is not None and length.isdigit() and int(length) <= SMALL_BODY


async def _pick(
    order: list[Member], tried: set[Member], last_error: UpstreamError | None
) -> Member:
    candidates = [m for m in order if m not in tried and m.healthy()]
    # The usual case decided without a coroutine: a candidate free now.
    member = _free_now(candidates)
    if member is not None:
        return member
    try:
        return await _wait_for_one(candidates)
    except TrafficRefused:
        if last_error is not None:
            raise last_error from None  # what the tried upstream did says more
        raise


def _free_now(candidates: list[Member]) -> Member | None:
    """The first candidate with a free slot and a closed (or probing) circuit."""
    for member in candidates:
        if not member.closed():
            continue
        slots = member.slots
        if slots is not None and not slots.try_take():
            continue
        if _through(member):
            return member
    return None


async def _wait_for_one(candidates: list[Member]) -> Member:
    """None free now: one bounded wait for a slot where there is room to wait; else 503."""
    if not candidates:
        raise TrafficRefused(
            "no_healthy_upstream", "no healthy upstream can take the request; retry later"
        )
    for member in candidates:
        slots = member.slots
        if slots is not None and member.closed() and slots.can_wait():
            if await slots.take() and _through(member):
                return member
            break
    if any(m.closed() and m.slots is not None for m in candidates):
        raise TrafficRefused("upstream_overloaded", "the upstream is at its connection limit")
    raise TrafficRefused("circuit_open", "the upstream's circuit is open; retry later")


def _through(member: Member) -> bool:
    """Pass the breaker (taking the half-open probe); a refusal gives the slot back."""
    if member.breaker is None or member.breaker.begin():
        return True
    member.release()
    return False


async def _read_body(receive: Receive) -> bytes:
    """A small request body read whole (Content-Length bounds it), so it can be sent again."""
    parts = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
