"""Upstream health: active checks (a periodic GET per upstream, with thresholds both ways) and
passive marks (failures on real traffic take an upstream out for a cool-off).

One background task serves every check: it wakes when the next check is due (or a reload
changed the set), so a reload never needs tasks started or stopped, and each probe is bounded
by its timeout. Probes use their own short connections, never the proxy's pool, so a check
measures the upstream, not a kept-alive socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.gateway.model import Upstream
from tokenward.gateway.traffic_model import ActiveHealth, PassiveHealth
from tokenward.gateway.upstream import MAX_HEAD_BYTES, UpstreamError, read_head

log = structlog.get_logger(__name__)
MAX_IDLE_WAIT = 1.0  # seconds the loop sleeps at most, so a clock jump is caught up soon


class Health:
    """One upstream's health on one route: up unless active checks or passive marks say not."""

    __slots__ = (
        "_clock",
        "_failures",
        "_oks",
        "_out_until",
        "_passive",
        "_passive_failures",
        "active",
        "label",
        "next_check",
        "probing",
        "up",
    )

    def __init__(
        self,
        label: str,
        active: ActiveHealth | None,
        passive: PassiveHealth | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.active = active
        self._passive = passive
        self._clock = clock
        self.up = True  # by the active checks; an upstream is presumed healthy until checked
        self._oks = 0
        self._failures = 0  # consecutive: active failures when checked, passive ones otherwise
        self._passive_failures = 0
        self._out_until = 0.0
        self.next_check = 0.0
        self.probing = False

    def usable(self) -> bool:
        return self.up and (self._out_until == 0.0 or self._clock() >= self._out_until)

    # passive: real traffic
    def failed(self) -> None:
        passive = self._passive
        if passive is None:
            return
        self._passive_failures += 1
        if self._passive_failures >= passive.failures:
            self._passive_failures = 0
            self._oks = 0  # with active checks, healthy_threshold good ones bring it back
            self._out_until = self._clock() + passive.cooloff
            log.warning("gateway_upstream_marked_unhealthy", upstream=self.label, by="passive")

    def succeeded(self) -> None:
        self._passive_failures = 0

    # active: the checks
    def checked(self, ok: bool) -> None:
        active = self.active
        if active is None:
            return
        if ok:
            self._failures = 0
            self._oks += 1
            if self._oks >= active.healthy_threshold and (not self.up or self._out_until):
                # Enough good checks since it was marked: back, whichever marked it.
                self.up = True
                self._out_until = 0.0
                log.info("gateway_upstream_healthy", upstream=self.label)
        else:
            self._oks = 0
            self._failures += 1
            if self.up and self._failures >= active.unhealthy_threshold:
                self.up = False
                log.warning("gateway_upstream_marked_unhealthy", upstream=self.label, by="active")


async def probe(upstream: Upstream, path: str, within: float) -> bool:
    """One GET of `path`: healthy on 2xx or 3xx within `within` seconds."""
    request = (
        f"GET {path} HTTP/1.1\r\nhost: {upstream.host_header}\r\n"
        "user-agent: tokenward-healthcheck\r\nconnection: close\r\n\r\n"
    ).encode("latin-1")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                upstream.host, upstream.port, limit=MAX_HEAD_BYTES
            )
            writer.write(request)
            head = await read_head(reader, "GET")
    except (TimeoutError, OSError, UpstreamError):
        return False
    finally:
        if writer is not None:
            writer.close()
    return 200 <= head.status < 400


Target = tuple[Upstream, Health]


class HealthChecker:
    """The background task running the active checks of whatever `targets()` returns."""

    def __init__(
        self,
        targets: Callable[[], Iterable[Target]],
        prober: Callable[[Upstream, str, float], Awaitable[bool]] = probe,
    ) -> None:
        self._targets = targets
        self._probe = prober
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    def changed(self) -> None:
        """The set of checks changed (a reload): look again now. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._run(), name="gateway-health-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        for running in list(self._probes):
            await cancel_and_wait(running)
        if task is not None:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            soonest: float | None = None
            for upstream, health in self._targets():
                active = health.active
                if active is None:
                    continue
                if soonest is None:
                    soonest = now + MAX_IDLE_WAIT
                if health.next_check <= now and not health.probing:
                    health.next_check = now + active.interval
                    health.probing = True
                    task = asyncio.create_task(self._check(upstream, health, active))
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)
                soonest = min(soonest, health.next_check)
            self._wake.clear()
            # Nothing to check (no route has `active:`): sleep until a reload says otherwise.
            wait = None if soonest is None else max(0.0, soonest - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _check(self, upstream: Upstream, health: Health, active: ActiveHealth) -> None:
        try:
            health.checked(await self._probe(upstream, active.path, active.timeout))
        finally:
            health.probing = False
