"""Usage events from the gateways to the authorization servers' monitors, over a Redis stream.

A gateway has no console, no user or session store and no place for alerts; the authorization
servers have all of these. So a gateway's `EventRelay` (its `UsageSink`) queues each decision
in memory (never blocking the request) and a background task appends what is queued to one
Redis stream every `interval`, as one entry per batch (one round trip for up to `batch`
events). Every authorization server runs an `EventConsumer` in one consumer group: each batch
reaches exactly one server's monitor, whose detectors count in the shared Redis windows, so a
token used at gateway A from one network and at gateway B from another is one token seen from
two networks. One server raises the alert (a claim in Redis, store/redis_alert_claims.py), and
it is in that server's console, audit log and webhook.

Delivery is at most once (`XREADGROUP NOACK`, `MAXLEN ~`): monitoring may lose events under
overload or outage, counted in `dropped`, but the request path never waits for Redis and the
stream cannot grow without bound. Entries carry what `UsageEvent` carries (verified claims and
fixed reason codes, never a token); the consumer checks each field's type and length before a
monitor sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any, cast

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from tokenward.core.events import ALLOW, DENY, EventBuffer, UsageEvent
from tokenward.core.lifecycle import cancel_and_wait

log = structlog.get_logger(__name__)
GROUP = "monitors"
VERSION = b"1"
MAX_STREAM_ENTRIES = 10_000  # batches kept for consumers that lag; the oldest are trimmed
MAX_FIELD = 512  # longest string field a consumer accepts (user agents are cut at 256)
_STRING_FIELDS = (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12)  # positions that hold str | None
_FIELD_NAMES = [field.name for field in fields(UsageEvent)]
_FIELD_COUNT = len(_FIELD_NAMES)
_FIELDS = attrgetter(*_FIELD_NAMES)  # an event as a plain tuple, cheaper than astuple's copy


class EventRelay:
    """The gateway's `UsageSink`: `emit` queues; `start` runs the shipper on the serving loop."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        *,
        capacity: int = 10_000,
        interval: float = 0.2,
        batch: int = 1000,
        owns_client: bool = False,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self.buffer = EventBuffer(capacity)
        self._interval = interval
        self._batch = batch
        self._owns_client = owns_client
        self._task: asyncio.Task[None] | None = None
        self.shipped = 0
        self.dropped = 0  # batches lost to a Redis error (events, not batches)
        self._failing = False

    def emit(self, event: UsageEvent) -> None:
        self.buffer.put(_FIELDS(event))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(RedisError, OSError):
            await self.flush()
        if self._owns_client:
            await self._redis.aclose()

    async def flush(self) -> int:
        """Ship everything queued so far; returns how many events went out."""
        sent = 0
        while batch := self.buffer.take(self._batch):
            try:
                await self._redis.xadd(
                    self.stream,
                    {"v": VERSION, "e": orjson.dumps(batch)},
                    maxlen=MAX_STREAM_ENTRIES,
                    approximate=True,
                )
            except (RedisError, OSError):
                self.dropped += len(batch)
                raise
            sent += len(batch)
        self.shipped += sent
        return sent

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                if not self._failing:  # once per outage, not every interval
                    log.warning("usage_relay_unavailable", error=type(exc).__name__)
                self._failing = True
            else:
                if self._failing:
                    log.info("usage_relay_recovered", dropped=self.dropped)
                self._failing = False

    @property
    def queued(self) -> int:
        return len(self.buffer)


def decode_batch(payload: bytes) -> list[UsageEvent]:
    """The events of one stream entry; raises ValueError on anything malformed."""
    rows = orjson.loads(payload)
    if not isinstance(rows, list):
        raise TypeError("a batch is a list")
    return [_event(row) for row in rows]


def _event(row: Any) -> UsageEvent:
    if isinstance(row, list) and len(row) == _FIELD_COUNT - 1:
        row.append(None)  # a gateway from before the path was shipped
    if not isinstance(row, list) or len(row) != _FIELD_COUNT:
        raise TypeError("an event is a list of 13 fields")
    when, status = row[0], row[7]
    if not isinstance(when, int | float) or isinstance(when, bool):
        raise TypeError("time")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("status")
    for position in _STRING_FIELDS:
        value = row[position]
        if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD):
            raise ValueError(f"field {position}")
    if row[8] not in (ALLOW, DENY) or row[4] is None or row[5] is None or row[9] is None:
        raise ValueError("decision, route, ip and reason are required")
    row[11] = row[11] or "gateway"
    return UsageEvent(*row)


Entry = tuple[bytes, dict[bytes, bytes]]


class EventConsumer:
    """An authorization server's reader of the gateways' stream, feeding its monitor."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        emit: Callable[[UsageEvent], None],
        *,
        block_ms: int = 500,  # under the client's socket timeout (store/redis_client.py)
        count: int = 20,
        retry: float = 1.0,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self._emit = emit
        self._block_ms = block_ms
        self._count = count
        self._retry = retry
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._task: asyncio.Task[None] | None = None
        self.received = 0
        self.malformed = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _ensure_group(self) -> None:
        try:
            # "$": a new group starts with what arrives from now on, not a stale backlog.
            await self._redis.xgroup_create(self.stream, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def poll(self) -> int:
        """Read and hand over one round of entries; returns how many events."""
        replies = await self._redis.xreadgroup(
            GROUP,
            self.consumer,
            {self.stream: ">"},
            count=self._count,
            block=self._block_ms,
            noack=True,
        )
        events = 0
        for _stream, entries in cast("list[tuple[bytes, list[Entry]]]", replies or []):
            for _id, entry in entries:
                events += self._hand_over(entry)
        return events

    def _hand_over(self, fields: dict[bytes, bytes]) -> int:
        if fields.get(b"v") != VERSION:
            self.malformed += 1
            return 0
        try:
            batch = decode_batch(fields.get(b"e", b""))
        except (ValueError, TypeError):
            self.malformed += 1
            log.warning("usage_relay_malformed_entry", stream=self.stream)
            return 0
        for event in batch:
            self._emit(event)
        self.received += len(batch)
        return len(batch)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self._ensure_group()
                while True:
                    await self.poll()
                    failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("usage_relay_unavailable", error=type(exc).__name__)
                failing = True
                await asyncio.sleep(self._retry)
