"""Poll-based SET delivery (RFC 8936): a receiver acknowledges what it processed (`ack`),
reports what it could not (`setErrs`), and gets up to `maxEvents` SETs still unacknowledged,
oldest first. With `returnImmediately` false and nothing waiting, the request is held until a
SET arrives or `MAX_WAIT` seconds pass (long polling, §2.2). A SET returned but not
acknowledged is returned again by the next poll (at-least-once delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import structlog

from tokenward.core.ports import SetQueue
from tokenward.core.records import SsfStream
from tokenward.oauth.ssf.streams import POLL, StreamError
from tokenward.oauth.ssf.transmitter import PollWakeups

log = structlog.get_logger(__name__)
MAX_EVENTS = 100  # per answer, whatever maxEvents asks
MAX_ACKS = 1000  # jtis acknowledged (or reported) per request
MAX_WAIT = 20.0  # seconds a long poll is held
RECHECK = 1.0  # seconds between re-reads of the queue while a long poll waits
MAX_WAITERS = 256  # long polls held at once per node; beyond, a poll answers at once


class PollEndpoint:
    def __init__(self, queue: SetQueue, wakeups: PollWakeups, max_wait: float = MAX_WAIT) -> None:
        self._queue = queue
        self._wakeups = wakeups
        self._max_wait = max_wait
        self._waiting = 0

    async def poll(self, stream: SsfStream, body: Mapping[str, Any]) -> dict[str, Any]:
        if stream.delivery_method != POLL:
            raise StreamError(400, "this stream is delivered by push, not poll")
        max_events, immediately, acks = _parse(body)
        if acks:
            await self._queue.ack(stream.stream_id, acks)
        if max_events == 0:  # §2.4: acknowledge only
            return {
                "sets": {},
                "moreAvailable": bool((await self._queue.pending(stream.stream_id, 1))[0]),
            }
        sets, more = await self._queue.pending(stream.stream_id, max_events)
        if not sets and not immediately and stream.status == "enabled":
            if self._waiting >= MAX_WAITERS:
                return {"sets": {}, "moreAvailable": False}
            self._waiting += 1
            try:
                sets, more = await self._wait(stream, max_events)
            finally:
                self._waiting -= 1
        if stream.status != "enabled":
            sets, more = [], bool(sets) or more  # paused: held, not handed out
        return {"sets": dict(sets), "moreAvailable": more}

    async def _wait(self, stream: SsfStream, max_events: int) -> tuple[list[tuple[str, str]], bool]:
        sets: list[tuple[str, str]] = []
        more = False
        deadline = time.monotonic() + self._max_wait
        while not sets:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Woken at once by a SET queued on this node; one queued by another node (the
            # queue is shared on SQL) is found by the re-read each RECHECK seconds.
            arrived = self._wakeups.event(stream.stream_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), min(left, RECHECK))
            sets, more = await self._queue.pending(stream.stream_id, max_events)
        return sets, more


def _parse(body: Mapping[str, Any]) -> tuple[int, bool, list[str]]:
    max_events = body.get("maxEvents", MAX_EVENTS)
    if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0:
        raise StreamError(400, "maxEvents must be a non-negative integer")
    immediately = body.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise StreamError(400, "returnImmediately must be true or false")
    acks = body.get("ack", [])
    if not isinstance(acks, list) or not all(isinstance(jti, str) for jti in acks):
        raise StreamError(400, "ack must be a list of jti strings")
    errors = body.get("setErrs", {})
    if not isinstance(errors, dict):
        raise StreamError(400, "setErrs must be an object of jti to error")
    if len(acks) + len(errors) > MAX_ACKS:
        raise StreamError(400, f"at most {MAX_ACKS} acknowledgements per request")
    for jti, error in errors.items():
        # §2.3: the receiver could not process these; they are not sent again.
        code = error.get("err") if isinstance(error, dict) else None
        log.warning("ssf_set_error_reported", jti=jti[:64], err=str(code)[:64])
    return min(max_events, MAX_EVENTS), immediately, [*acks, *errors]
