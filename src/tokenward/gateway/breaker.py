"""A circuit breaker for one upstream: closed, open after N consecutive failures, half-open
after a cool-off, when exactly one request may probe; its outcome closes or re-opens it."""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}


class Breaker:
    __slots__ = ("_clock", "_cooloff", "_failures", "_limit", "_opened", "_probe_since", "_state")

    def __init__(
        self, failures: int, cooloff: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = failures
        self._cooloff = cooloff
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened = 0.0
        self._probe_since: float | None = None  # when the half-open probe went out

    @property
    def state(self) -> int:
        if self._state == OPEN and self._clock() - self._opened >= self._cooloff:
            return HALF_OPEN
        return self._state

    def available(self) -> bool:
        """Whether a request may go now (without taking the half-open probe)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        # A probe whose outcome never came back (its client left mid-stream) is given up
        # after one more cool-off, so the circuit cannot stay half-open for ever.
        since = self._probe_since
        return since is None or self._clock() - since >= self._cooloff

    def begin(self) -> bool:
        """Take the way through for one request: False if the circuit refuses it."""
        if not self.available():
            return False
        if self.state == HALF_OPEN:
            self._state = HALF_OPEN
            self._probe_since = self._clock()
        return True

    def success(self) -> None:
        self._failures = 0
        if self._state != CLOSED and self.state == HALF_OPEN:
            self._state = CLOSED
            self._probe_since = None

    def failure(self) -> None:
        if self.state == HALF_OPEN:
            self._open()
            return
        if self._state == OPEN:
            return
        self._failures += 1
        if self._failures >= self._limit:
            self._open()

    def _open(self) -> None:
        self._state = OPEN
        self._opened = self._clock()
        self._failures = 0
        self._probe_since = None
