"""Per-upstream connection limits: at most N requests in flight, at most M waiting for a
turn and each only so long; beyond that the caller answers 503 rather than queue without end."""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    __slots__ = ("in_use", "max_in_use", "max_pending", "pending_timeout", "waiters")

    def __init__(self, max_in_use: int, max_pending: int, pending_timeout: float) -> None:
        self.max_in_use = max_in_use
        self.max_pending = max_pending
        self.pending_timeout = pending_timeout
        self.in_use = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.in_use < self.max_in_use and not self.waiters:
            self.in_use += 1
            return True
        return False

    def can_wait(self) -> bool:
        return len(self.waiters) < self.max_pending

    async def take(self) -> bool:
        """A slot now, or after a bounded wait; False when none came (or no room to wait)."""
        if self.try_take():
            return True
        if not self.can_wait():
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.pending_timeout):
                await waiter
        except TimeoutError:
            # Handed over just as the wait ran out: ours all the same.
            return waiter.done() and not waiter.cancelled()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed over, but the request is gone: pass it on
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
        return True

    def give(self) -> None:
        """Hand the slot to the first live waiter (it keeps counting as in use), else free it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_use -= 1
