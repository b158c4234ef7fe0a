"""Idempotency keys for unsafe methods (draft-ietf-httpapi-idempotency-key-header).

For a route with `idempotency:` set, a request carrying `Idempotency-Key` is remembered under
(route, subject, key) with a fingerprint of its method, target and body:

- the first one goes upstream; its answer is stored for `ttl` seconds and replayed to any
  repeat with the same fingerprint (`Idempotent-Replayed: true`);
- a repeat while the first is still in flight gets 409 (the client must wait and retry);
- the same key with a different fingerprint gets 422 (a client bug: keys are per operation).

Scoped to the subject so one user can never replay (or probe) another's answer. Bodies are
buffered up to `MAX_BODY` each way to fingerprint and to store; a request body over it is 413,
an answer over it is passed through but not stored (the key is released). Gateway-made
failures (502, 504, a client that left) release the key as well, so the client may retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from starlette.types import Message, Receive, Scope, Send

from tokenward.core.idempotency_records import Headers, Stored
from tokenward.gateway.policy import Denied
from tokenward.store.errors import STORAGE_ERRORS

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
MAX_KEY_LENGTH = 255
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    expires_at: float
    response: Stored | None = None  # None while the first request is in flight


class IdempotencyStore(Protocol):
    """Async so that a shared backend (`tokenward.store.redis_idempotency`) can implement it:
    gateways behind one balancer must see each other's keys."""

    async def begin(self, key: str, fingerprint: bytes, now: float, ttl: float) -> str | Stored:
        """ "new" (go ahead), "busy" (in flight: 409), "mismatch" (422), or the stored answer."""
        ...

    async def complete(self, key: str, response: Stored, now: float, ttl: float) -> None: ...

    async def release(self, key: str) -> None: ...


class MemoryIdempotencyStore:
    IN_FLIGHT_LIMIT = 300.0  # an in-flight marker that outlives any timeout is stale

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max_entries = max_entries

    async def begin(self, key: str, fingerprint: bytes, now: float, ttl: float) -> str | Stored:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            entry = None
        if entry is None:
            self._make_room(now)
            self._entries[key] = _Entry(fingerprint, now + self.IN_FLIGHT_LIMIT)
            return "new"
        if entry.fingerprint != fingerprint:
            return "mismatch"
        return entry.response if entry.response is not None else "busy"

    async def complete(self, key: str, response: Stored, now: float, ttl: float) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.response = response
            entry.expires_at = now + ttl

    async def release(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.response is None:  # a stored answer stands
            del self._entries[key]

    def _make_room(self, now: float) -> None:
        entries = self._entries
        if len(entries) < self._max_entries:
            return
        for key in [key for key, entry in entries.items() if entry.expires_at <= now]:
            del entries[key]
        while len(entries) >= self._max_entries:
            del entries[next(iter(entries))]  # oldest first


def fingerprint(scope: Scope, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope.get("raw_path") or b"", scope["query_string"]):
        digest.update(len(part).to_bytes(4, "big") + part)  # length-prefixed: no ambiguity
    digest.update(body)
    return digest.digest()


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if it is over MAX_BODY (or the client left)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_receive(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class Recorder:
    """Wraps `send` to keep a copy of the answer (up to MAX_BODY) while it streams out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.headers: Headers = []
        self._chunks: list[bytes] = []
        self._size = 0
        self.complete = False
        self.too_big = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunk: bytes = message.get("body", b"")
            self._size += len(chunk)
            if self._size > MAX_BODY:
                self.too_big = True
                self._chunks.clear()
            elif not self.too_big:
                self._chunks.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
        await self._send(message)

    def stored(self) -> Stored | None:
        if not self.complete or self.too_big:
            return None
        return Stored(self.status, self.headers, b"".join(self._chunks))


# Fields that describe this moment, not the stored answer: the replay gets fresh ones.
_PER_RESPONSE = frozenset({b"ratelimit", b"ratelimit-policy", b"strict-transport-security"})


async def send_stored(send: Send, stored: Stored, extra: Headers) -> None:
    kept = [(name, value) for name, value in stored.headers if name not in _PER_RESPONSE]
    headers = [*kept, (b"idempotent-replayed", b"true"), *extra]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


class Idempotency:
    """The flow around one forward: begin → replay / refuse / forward and record."""

    def __init__(self, store: IdempotencyStore, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ttl: float,
        scope_key: str,
        value: bytes,
        extra: Headers,
        forward: Callable[[Receive, Send], Awaitable[int]],
    ) -> tuple[int, bool]:
        """(status, replayed). Raises Denied for 400/409/413/422."""
        if not value or len(value) > MAX_KEY_LENGTH:
            raise Denied(400, "malformed", "Idempotency-Key must be 1 to 255 characters")
        body = await read_body(receive)
        if body is None:
            raise Denied(413, "body_too_large", "bodies over 1 MiB cannot use Idempotency-Key")
        key = f"{scope_key}\0{value.decode('latin-1')}"
        state = await self.store.begin(key, fingerprint(scope, body), self._clock(), ttl)
        if state == "busy":
            raise Denied(
                409,
                "idempotency_conflict",
                "a request with this Idempotency-Key is still in progress",
            )
        if state == "mismatch":
            raise Denied(
                422,
                "idempotency_mismatch",
                "this Idempotency-Key was used with a different request",
            )
        if isinstance(state, Stored):
            await send_stored(send, state, extra)
            return state.status, True
        recorder = Recorder(send)
        try:
            status = await forward(replay_receive(body), recorder)
        except BaseException:
            # A gateway-made failure: let the client retry. Shielded: a cancelled request must
            # still release its key, or the key stays "busy" until the in-flight limit.
            with contextlib.suppress(*STORAGE_ERRORS):
                await asyncio.shield(self.store.release(key))
            raise
        stored = recorder.stored()
        try:
            if stored is None:
                await self.store.release(key)
            else:
                await self.store.complete(key, stored, self._clock(), ttl)
        except STORAGE_ERRORS as exc:
            # The answer has gone out already; a repeat meets "busy" (409) until the in-flight
            # marker expires, never a second forward.
            log.warning("idempotency_record_lost", error=type(exc).__name__)
        return status, False
