"""Alerts to a webhook: JSON POST signed with HMAC-SHA256, retried with exponential backoff.

Signature header (the Stripe scheme, so receivers can reuse known code):

    Tokenward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

The timestamp is inside the MAC, so a receiver that refuses old `t` (`verify_signature` allows
five minutes) also refuses replays. `Tokenward-Delivery` carries the alert id for idempotency.

Delivery runs on its own task, one alert at a time. A network error, 408, 429 or 5xx is retried
after `base_delay`, `2·base_delay`, ... capped at `max_delay`, `max_attempts` times in all; any
other answer ends the delivery. At most `capacity` alerts wait; past that the oldest is dropped
and counted, so a dead receiver costs bounded memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import structlog

from tokenward.core.lifecycle import cancel_and_wait

log = structlog.get_logger(__name__)
SIGNATURE_HEADER = "Tokenward-Signature"
DELIVERY_HEADER = "Tokenward-Delivery"
RETRY_STATUSES = frozenset({408, 429})


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300.0
) -> bool:
    """What a receiver does: parse the header, recompute, compare in constant time."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = 5.0,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        capacity: int = 1000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, delivery_id: str, payload: dict[str, Any]) -> None:
        """Queue one alert; never blocks."""
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._pending.append((delivery_id, orjson.dumps(payload, default=str)))
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def wait_idle(self) -> None:
        """Until everything queued so far was delivered or given up on (for tests, shutdown)."""
        await self._idle.wait()

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                if not self._pending:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                delivery_id, body = self._pending.popleft()
                await self._deliver(client, delivery_id, body)

    async def _deliver(self, client: httpx.AsyncClient, delivery_id: str, body: bytes) -> None:
        for attempt in range(1, self._max_attempts + 1):
            outcome = await self._attempt(client, delivery_id, body)
            if outcome == "done":
                self.delivered += 1
                return
            if outcome == "refused" or attempt == self._max_attempts:
                break
            await self._sleep(min(self._base_delay * 2 ** (attempt - 1), self._max_delay))
        self.failed += 1
        log.warning("webhook_gave_up", delivery=delivery_id, attempts=attempt)

    async def _attempt(self, client: httpx.AsyncClient, delivery_id: str, body: bytes) -> str:
        headers = {
            "content-type": "application/json",
            "user-agent": "tokenward-webhook",
            SIGNATURE_HEADER: sign(self._secret, body, int(self._clock())),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("webhook_retry", delivery=delivery_id, error=type(exc).__name__)
            return "retry"
        if response.is_success:
            return "done"
        if response.status_code >= 500 or response.status_code in RETRY_STATUSES:
            log.info("webhook_retry", delivery=delivery_id, status=response.status_code)
            return "retry"
        log.warning("webhook_refused", delivery=delivery_id, status=response.status_code)
        return "refused"
