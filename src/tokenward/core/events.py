"""What producers emit: one `UsageEvent` per protected request, one `AuthEvent` per notable
authorization-server event (refresh-token reuse, failed sign-in).

Emitting never blocks and never raises: `emit` appends to a bounded buffer and returns; when the
buffer is full the event is dropped and counted (`EventBuffer.dropped`), so analytics can lose
events under overload but the request path never waits for them. The monitor drains the buffer
on its own task, away from the request.

Events carry verified claims and fixed reason codes only: never a token, a cookie, a password
or a query string.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

ALLOW, DENY = "allow", "deny"

# Deny reasons (the gateway's codes, docs/gateway.md, plus the ones the server adds).
MISSING_TOKEN = "missing_token"
INVALID_TOKEN = "invalid_token"
EXPIRED = "expired"
REVOKED = "revoked"
SESSION_ENDED = "session_ended"  # finer than `revoked`: the token's session (sid) ended
INSUFFICIENT_SCOPE = "insufficient_scope"
IP_BLOCKED = "ip_blocked"
# Reasons that mean "this credential did not validate": what failure bursts count.
VALIDATION_FAILURES = frozenset(
    {
        MISSING_TOKEN,
        INVALID_TOKEN,
        EXPIRED,
        REVOKED,
        SESSION_ENDED,
        "malformed",
        "wrong_audience",
        "invalid_dpop_proof",
        "token_in_query",
    }
)

# AuthEvent kinds.
REFRESH_REUSE = "refresh_reuse"
LOGIN_FAILED = "login_failed"


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One protected request, as decided. `time` is epoch seconds (the producer's clock)."""

    time: float
    jti: str | None  # None when no token could be attributed (missing, malformed, bad signature)
    sub: str | None
    client_id: str | None
    route: str  # the gateway's route name, or the request path at the server
    ip: str
    user_agent: str | None
    status: int
    decision: str  # ALLOW or DENY
    reason: str  # "ok", or a fixed reason code such as REVOKED
    sid: str | None = None  # the token's session, when it has one
    source: str = "server"  # "gateway" or "server"
    path: str | None = None  # the request path without its query (the gateway's), if known


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """Something the authorization server noticed that the monitor should know about."""

    time: float
    kind: str  # REFRESH_REUSE or LOGIN_FAILED
    ip: str | None
    sub: str | None = None
    client_id: str | None = None
    sid: str | None = None
    family_id: str | None = None  # the refresh-token grant family, for REFRESH_REUSE
    username: str | None = None  # as typed, truncated, for LOGIN_FAILED
    reason: str = ""  # e.g. "wrong_password", "throttled"


class UsageSink(Protocol):
    """Where the gateway and the server's own APIs send usage events. Must not block."""

    def emit(self, event: UsageEvent) -> None: ...


class AuthEventSink(Protocol):
    """Where the authorization server sends security events. Must not block."""

    def emit(self, event: AuthEvent) -> None: ...


Event = UsageEvent | AuthEvent
# A UsageEvent's fields as a plain tuple, in declaration order: what `Monitor.emit_fields`
# queues. A tuple of strings and numbers costs a third of the dataclass to build and is not
# tracked by the garbage collector while it waits; the monitor builds the event when it drains.
RawUsage = tuple[
    float,
    str | None,  # jti
    str | None,  # sub
    str | None,  # client_id
    str,  # route
    str,  # ip
    str | bytes | None,  # user agent (bytes are decoded when the event is built)
    int,  # status
    str,  # decision
    str,  # reason
    str | None,  # sid
    str,  # source
]
Queued = Event | RawUsage


class EventBuffer:
    """A bounded FIFO: `put` never blocks; past `capacity` it drops the event and counts it.

    `collections.deque` appends and pops are atomic under the GIL, so a producer on another
    thread (a WSGI app, say) may `put` while the monitor's task takes.
    """

    __slots__ = ("_items", "capacity", "dropped", "received")

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("the event buffer needs room for at least one event")
        self.capacity = capacity
        self._items: deque[Queued] = deque()
        self.dropped = 0
        self.received = 0

    def put(self, event: Queued) -> None:
        if len(self._items) >= self.capacity:
            self.dropped += 1
            return
        self._items.append(event)
        self.received += 1

    def take(self, limit: int) -> list[Queued]:
        """Up to `limit` events, oldest first."""
        items = self._items
        if len(items) <= limit:  # the usual case: hand over everything at C speed
            self._items = deque()
            return list(items)
        taken: list[Queued] = []
        while items and len(taken) < limit:
            taken.append(items.popleft())
        return taken

    def __len__(self) -> int:
        return len(self._items)


class NullSink:
    """A sink that throws events away: monitoring switched off."""

    def emit(self, event: Event) -> None:
        return None
