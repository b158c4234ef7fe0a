"""Outbound deliveries: SETs pushed to receivers (RFC 8935) and logout tokens POSTed to relying
parties (Back-Channel Logout 1.0), over one bounded HTTP client.

Bounded everywhere: each network step has a timeout and the whole attempt `deadline`, redirects
are not followed (a receiver that moved registers its new URL), at most `MAX_RESPONSE` bytes of an
answer are read, and at most
`capacity` deliveries wait (past that the oldest is dropped and counted). A network error, 408,
429 or 5xx is retried after `base_delay`, `2·base_delay`, ... capped at `max_delay`, up to
`max_attempts` in all; any other answer ends the delivery. Retries wait in a queue ordered by
due time, so one dead receiver's backoff never holds up another's deliveries.

URLs were checked when registered (oauth.client_uris, oauth.outbound), and are checked again
on every attempt (oauth.outbound: https; public addresses only, checked when connecting, since
DNS can change), unless `allow_loopback` (development, tests). A refused URL is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import structlog

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.oauth.outbound import GuardedTransport, refused_by_guard, url_problem

log = structlog.get_logger(__name__)
MAX_RESPONSE = 16 * 1024  # bytes of an answer read (an error body); the rest is discarded
RETRY_STATUSES = frozenset({408, 429})


@dataclass(order=True)
class Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False, repr=False)
    headers: Mapping[str, str] = field(compare=False, repr=False)
    label: str = field(compare=False)  # for logs: what it is (never the token itself)
    attempts: int = field(default=0, compare=False)


@dataclass
class DeliveryStats:
    delivered: int = 0
    refused: int = 0  # the receiver answered 4xx: not retried
    gave_up: int = 0  # retries exhausted
    dropped: int = 0  # the queue was full


class Deliveries:
    def __init__(
        self,
        *,
        timeout: float = 5.0,
        deadline: float = 15.0,
        allow_loopback: bool = False,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._deadline = deadline
        self._allow_loopback = allow_loopback
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._capacity = capacity
        self._clock = clock
        # Tests may hand in a transport of their own; otherwise, the guarded one.
        self._transport = transport or GuardedTransport(allow_loopback=allow_loopback)
        self._heap: list[Delivery] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.stats = DeliveryStats()

    def submit(self, url: str, body: bytes, headers: Mapping[str, str], label: str) -> None:
        """Queue one delivery; never blocks."""
        if len(self._heap) >= self._capacity:
            oldest = min(self._heap, key=lambda item: item.seq)
            self._heap.remove(oldest)
            heapq.heapify(self._heap)
            self.stats.dropped += 1
            log.warning("delivery_dropped", label=oldest.label, reason="queue_full")
        heapq.heappush(
            self._heap, Delivery(self._clock(), next(self._seq), url, body, headers, label)
        )
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def wait_idle(self) -> None:
        """Until every delivery queued so far is done or given up on (tests, shutdown)."""
        await self._idle.wait()

    def __len__(self) -> int:
        return len(self._heap)

    async def _run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            transport=self._transport,
            trust_env=False,  # an environment's proxy would connect for us, unchecked
        ) as client:
            while True:
                if not self._heap:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                wait = self._heap[0].due - self._clock()
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                await self._attempt(client, heapq.heappop(self._heap))

    async def _attempt(self, client: httpx.AsyncClient, item: Delivery) -> None:
        item.attempts += 1
        try:
            status = await self._post(client, item)
        except _Refused as exc:
            self.stats.refused += 1
            log.warning("delivery_refused", label=item.label, reason=str(exc))
            return
        if status is not None and 200 <= status < 300:
            self.stats.delivered += 1
            return
        if status is not None and status < 500 and status not in RETRY_STATUSES:
            self.stats.refused += 1
            log.warning("delivery_refused", label=item.label, status=status)
            return
        if item.attempts >= self._max_attempts:
            self.stats.gave_up += 1
            log.warning("delivery_gave_up", label=item.label, attempts=item.attempts)
            return
        delay = min(self._base_delay * 2 ** (item.attempts - 1), self._max_delay)
        item.due = self._clock() + delay
        heapq.heappush(self._heap, item)

    async def _post(self, client: httpx.AsyncClient, item: Delivery) -> int | None:
        """The answer's status, or None when there was none (network error, timeout); raises
        `_Refused` when the URL or its address may not be reached."""
        problem = url_problem(item.url, allow_loopback=self._allow_loopback)
        if problem:
            raise _Refused(problem)
        try:
            # A receiver that answers a byte at a time stays within each step's timeout: the
            # deadline bounds the attempt as a whole.
            async with (
                asyncio.timeout(self._deadline),
                client.stream(
                    "POST", item.url, content=item.body, headers=dict(item.headers)
                ) as response,
            ):
                read = 0
                async for chunk in response.aiter_bytes():
                    read += len(chunk)
                    if read > MAX_RESPONSE:
                        break  # we only wanted the status: an endless answer is cut off
                return response.status_code
        except httpx.HTTPError as exc:
            if refused_by_guard(exc):
                raise _Refused(str(exc)) from None
            log.info("delivery_retry", label=item.label, error=type(exc).__name__)
            return None
        except TimeoutError:
            log.info("delivery_retry", label=item.label, error="deadline")
            return None


class _Refused(Exception):
    """The URL or its address may not be reached (oauth.outbound): a delivery not retried."""
