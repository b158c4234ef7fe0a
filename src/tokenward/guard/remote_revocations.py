"""A revocation mirror that follows an authorization server's `GET /revocations` over HTTP, for
a resource server that shares no database or Redis with it.

`Validator(..., revocations=RemoteRevocations("https://auth.example.com"))` is the whole setup:
the first validator miss starts the follower (a task in the running event loop; a daemon thread
for synchronous validation, e.g. the Flask decorator) and waits up to `startup_wait` for the
first snapshot. It then long-polls from its cursor, so a revocation arrives as soon as the
server learns of it. Until the first complete sync, and again `max_staleness` after the last
one, validators answer 503 `temporarily_unavailable` (fail closed). Apps with a lifespan may
`await start()` / `await stop()` or use `async with`.

Entries are digests (core/revocation_wire.py): `reason()` looks up the digests of the token's
jti, sub, sid and client_id, computed once per token and memoised; the cached path with an
unchanged generation does no more than with any other mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeGuard

import httpx
import structlog

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.core.revocation_mirror import (
    REVOKED_CLIENT,
    REVOKED_JTI,
    REVOKED_SESSION,
    REVOKED_SUBJECT,
    RevocationMirror,
)
from tokenward.core.revocation_wire import (
    CLIENT,
    JTI,
    KINDS,
    MAX_LIMIT,
    MAX_SEQ,
    MAX_WAIT,
    PATH,
    SESSION,
    SUBJECT,
    digest,
)

log = structlog.get_logger(__name__)
MAX_BODY_BYTES = 1024 * 1024  # a full page is about 170 kB
MAX_PAUSE = 10.0  # seconds: no server hint or backoff keeps us away longer
PURGE_EVERY = 60.0
MEMO_SIZE = 20_000  # tokens whose claims' digests are kept (twice a validator's default cache)
_DIGEST = re.compile(r"[A-Za-z0-9_-]{43}")


_Claims = tuple[str, str, str | None, str]  # jti, sub, sid, client_id
_Keys = tuple[str, str, str | None, str]  # their digests


class FeedError(Exception):
    """The feed answered something we cannot use; `retry_after` is the server's hint."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class FeedPage:
    head: int
    next: int
    more: bool
    retry: float
    entries: tuple[tuple[int, str, str, float | None, float], ...]  # seq, kind, digest, ...


class RemoteRevocations(RevocationMirror):
    def __init__(
        self,
        issuer: str,
        *,
        endpoint: str | None = None,
        wait: int = 20,
        max_staleness: float = 30.0,
        timeout: float = 5.0,
        startup_wait: float = 5.0,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`issuer`: the authorization server's base URL; the feed is `<issuer>/revocations`
        (what its metadata calls `tokenward_revocation_feed_endpoint`) unless `endpoint` says
        otherwise. `wait`: seconds a long-poll may be held. `clock` must be the validator's."""
        super().__init__()
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError(f"wait must be from 0 to {MAX_WAIT} seconds")
        if wait + timeout >= max_staleness:
            # A long-poll held that long would make a healthy follower look stale.
            raise ValueError("wait + timeout must be shorter than max_staleness")
        self.endpoint = endpoint or issuer.rstrip("/") + PATH
        self.fresh_until = -math.inf  # vouches for nothing before the first sync
        self.synced_at: float | None = None
        self._wait = wait
        self._max_staleness = max_staleness
        self._timeout = timeout
        self._startup_wait = startup_wait
        self._max_entries = max_entries
        self._clock = clock
        self._transport = transport
        self._memo: dict[_Claims, _Keys] = {}
        self._caught_up = False  # a page with more=false since the cursor was last reset
        self._purged_at = time.monotonic()
        # Who follows: a task in an app's event loop, or a thread with its own loop.
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._synced = threading.Event()  # the first snapshot is in
        self._first_sync: asyncio.Event | None = None  # the same, for the task's loop
        self._startup_deadline = 0.0

    # --- what validators call ------------------------------------------------------------
    def reason(self, jti: str, sub: str, sid: str | None, client_id: str, iat: int) -> str | None:
        # RevocationMirror.reason, by digest. The digests of a token's claims are computed once
        # and memoised, so a re-check after a revocation costs one more dict lookup, no hashing.
        claims = (jti, sub, sid, client_id)
        keys = self._memo.get(claims)
        if keys is None:
            keys = self._remember(claims)
        if keys[0] in self.jtis:
            return REVOKED_JTI
        mark = self.subjects.get(keys[1])
        if mark is not None and iat < mark[0]:
            return REVOKED_SUBJECT
        if keys[2] is not None:
            mark = self.sessions.get(keys[2])
            if mark is not None and iat < mark[0]:
                return REVOKED_SESSION
        mark = self.clients.get(keys[3])
        if mark is not None and iat < mark[0]:
            return REVOKED_CLIENT
        return None

    def ensure_following(self) -> Awaitable[None] | None:
        if not self._alive() and not self._stopped:
            with self._lock:
                if not self._alive():
                    self._start_task()
        if self._synced.is_set() or time.monotonic() >= self._startup_deadline:
            return None
        return self._await_first_sync()

    def ensure_following_sync(self) -> None:
        if not self._alive() and not self._stopped:
            with self._lock:
                if not self._alive():
                    self._start_thread()
        remaining = self._startup_deadline - time.monotonic()
        if remaining > 0 and not self._synced.is_set():
            self._synced.wait(remaining)

    def staleness(self) -> float:
        """Seconds since the last complete sync (infinite before the first)."""
        return self._clock() - self.synced_at if self.synced_at is not None else math.inf

    # --- explicit life cycle (apps with a lifespan) --------------------------------------
    async def start(self) -> bool:
        """Follow from this event loop; True once the first snapshot is in, False when it did
        not come within `startup_wait` (requests get 503 until it does)."""
        self._stopped = False
        waiting = self.ensure_following()
        if waiting is not None:
            await waiting
        return self._synced.is_set()

    async def stop(self) -> None:
        """Stop following. The mirror keeps what it has and turns stale `max_staleness` after
        its last sync; it does not start again by itself (`start()` does)."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            if task.get_loop() is asyncio.get_running_loop():
                await cancel_and_wait(task)
            else:
                task.get_loop().call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            await asyncio.to_thread(self.close)  # it joins the thread: not on the event loop

    def close(self) -> None:
        """Stop the follower thread that synchronous validation started (if any), and wait."""
        self._stopped = True
        loop, task, thread = self._thread_loop, self._thread_task, self._thread
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._timeout + 1)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- runners -------------------------------------------------------------------------
    def _alive(self) -> bool:
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return True
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start_task(self) -> None:
        loop = asyncio.get_running_loop()
        self._startup_deadline = time.monotonic() + self._startup_wait
        self._first_sync = asyncio.Event()
        self._task = loop.create_task(self._follow(), name="tokenward-revocations")

    def _start_thread(self) -> None:
        self._startup_deadline = time.monotonic() + self._startup_wait
        self._first_sync = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._follow_in_thread(),), name="tokenward-revocations"
        )
        self._thread.daemon = True  # never holds the process open
        self._thread.start()

    async def _follow_in_thread(self) -> None:
        self._thread_loop = asyncio.get_running_loop()
        self._thread_task = asyncio.current_task()
        if not self._stopped:  # close() may have come before this thread had a loop
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow()

    async def _await_first_sync(self) -> None:
        first, task = self._first_sync, self._task
        if first is None or task is None or task.get_loop() is not asyncio.get_running_loop():
            return  # followed from another thread: its event is not ours to await
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._startup_deadline - time.monotonic()):
                await first.wait()

    # --- following -----------------------------------------------------------------------
    async def _follow(self) -> None:
        async with httpx.AsyncClient(
            transport=self._transport, headers={"accept": "application/json"}
        ) as http:
            failures = 0
            while True:
                try:
                    pause = await self._step(http)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the follower must outlive any answer
                    failures += 1
                    pause = self._backoff(failures, exc)
                    log.warning(
                        "revocation_feed_unavailable",
                        url=self.endpoint,
                        error=type(exc).__name__,
                        reason=str(exc) if isinstance(exc, FeedError) else None,
                        staleness=round(self.staleness(), 1),
                    )
                self._purge_now_and_then()
                if pause > 0:
                    await asyncio.sleep(pause)

    async def _step(self, http: httpx.AsyncClient) -> float:
        """One request; returns the pause before the next."""
        after = self.applied_seq
        wait = self._wait if self._caught_up else 0
        params = {"after": str(after), "limit": str(MAX_LIMIT), "wait": str(wait)}
        timeout = httpx.Timeout(self._timeout, read=wait + self._timeout)
        async with http.stream("GET", self.endpoint, params=params, timeout=timeout) as response:
            if response.status_code != 200:
                raise FeedError(f"HTTP {response.status_code}", _retry_after(response))
            body = await _read_capped(response)
        page = parse_page(body, after)
        if page.head < after:
            # The log restarted (a restore, a new deployment at this address): read it again
            # from the start. What we hold stays until it expires: more refusals, never fewer.
            log.warning("revocation_feed_reset", url=self.endpoint, cursor=after, head=page.head)
            self.applied_seq, self._caught_up = 0, False
            return 0.0
        self._install(page)
        if page.more or (wait == 0 and self._wait > 0):
            return 0.0  # more to read, or caught up and about to long-poll: ask at once
        return page.retry

    def _install(self, page: FeedPage) -> None:
        held = len(self.jtis) + len(self.subjects) + len(self.sessions) + len(self.clients)
        if held + len(page.entries) > self._max_entries:
            self.purge(self._clock())
            held = len(self.jtis) + len(self.subjects) + len(self.sessions) + len(self.clients)
            if held + len(page.entries) > self._max_entries:
                # Cannot hold the truth: stop vouching (503) rather than drop revocations.
                raise FeedError(f"more live revocations than max_entries={self._max_entries}")
        for _seq, kind, value, issued_before, expires_at in page.entries:
            self.record(kind, value, issued_before, expires_at)
        self.applied_seq = page.next
        if not page.more:
            self._caught_up = True
            self.synced_at = now = self._clock()
            self.fresh_until = now + self._max_staleness
            self._synced.set()
            if self._first_sync is not None:
                self._first_sync.set()

    def _backoff(self, failures: int, exc: Exception) -> float:
        pause = min(0.25 * 2.0 ** min(failures - 1, 10), 5.0)
        pause *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter spreads retries, no secret
        if isinstance(exc, FeedError):
            pause = max(pause, exc.retry_after)
        return min(pause, MAX_PAUSE)

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._purged_at >= PURGE_EVERY:
            self._purged_at = time.monotonic()
            self.purge(self._clock())

    def _remember(self, claims: _Claims) -> _Keys:
        jti, sub, sid, client_id = claims
        keys = (
            digest(JTI, jti),
            digest(SUBJECT, sub),
            None if sid is None else digest(SESSION, sid),
            digest(CLIENT, client_id),
        )
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()  # bounded; the tokens still in use are hashed again
        self._memo[claims] = keys
        return keys


# --- the wire ----------------------------------------------------------------------------
async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
        raise FeedError("the answer is too large")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise FeedError("the answer is too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return min(float(value), MAX_PAUSE) if value.isdigit() else 0.0


def parse_page(body: bytes, after: int) -> FeedPage:
    """A page of GET /revocations for the cursor `after`, checked whole: one bad entry and
    nothing of it is applied (FeedError)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise FeedError("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise FeedError("the answer is not a JSON object")
    head, cursor = _seq(data.get("head")), _seq(data.get("next"))
    more, retry, entries = data.get("more"), data.get("retry"), data.get("entries")
    if not isinstance(more, bool) or not isinstance(entries, list) or len(entries) > MAX_LIMIT:
        raise FeedError("the page is malformed")
    if not _number(retry) or retry < 0:
        raise FeedError("the retry hint is malformed")
    if head < after:  # a reset: the log is not the one we followed
        return FeedPage(head, head, False, 0.0, ())
    parsed = tuple(_entry(entry) for entry in entries)
    seqs = [after, *(entry[0] for entry in parsed)]
    if any(later <= earlier for earlier, later in itertools.pairwise(seqs)):
        raise FeedError("entries are not in order after the cursor")
    if not seqs[-1] <= cursor <= head or (more and cursor != seqs[-1]):
        raise FeedError("the page's cursor does not match its entries")
    return FeedPage(head, cursor, more, min(float(retry), MAX_PAUSE), parsed)


def _entry(entry: Any) -> tuple[int, str, str, float | None, float]:
    if not isinstance(entry, dict):
        raise FeedError("an entry is not an object")
    kind, value = entry.get("kind"), entry.get("digest")
    before, expires = entry.get("issued_before"), entry.get("expires_at")
    if kind not in KINDS or not isinstance(value, str) or _DIGEST.fullmatch(value) is None:
        raise FeedError("an entry's kind or digest is malformed")
    if not _number(expires) or not (before is None if kind == JTI else _number(before)):
        raise FeedError("an entry's times are malformed")
    return _seq(entry.get("seq")), kind, value, None if before is None else float(before), expires


def _seq(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise FeedError("a sequence number is malformed")
    return value


def _number(value: Any) -> TypeGuard[float]:
    return type(value) in (int, float) and math.isfinite(value)
