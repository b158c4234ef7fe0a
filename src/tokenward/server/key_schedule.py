"""The signing keys' schedule (publish, activate, retire), ticked by each server in the
background; a `Background` for the deployment's lifespan. Of `serve --workers N`, one worker
ticks; the others only reload what it (or `tokenward keys rotate`, or another node) stored."""

from __future__ import annotations

import asyncio

import structlog

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.tokens.key_manager import KeyManager

log = structlog.get_logger(__name__)
KEY_SCHEDULE_SECONDS = 60.0


class KeySchedule:
    def __init__(
        self, keys: KeyManager, interval: float = KEY_SCHEDULE_SECONDS, *, changes: bool = True
    ) -> None:
        self._keys = keys
        self._interval = interval
        self._changes = changes  # False: reload only (a worker beside the one that ticks)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if not self._changes:
                    await self._keys.reload()
                    continue
                changed = await self._keys.tick()
            except Exception as exc:  # noqa: BLE001 - the schedule must outlive one failed tick
                log.error("key_schedule_failed", error=type(exc).__name__)  # noqa: TRY400 - no trace: it may hold secrets
                continue
            for key in changed:
                log.info("signing_key_state", kid=key.kid, state=key.state.value)
