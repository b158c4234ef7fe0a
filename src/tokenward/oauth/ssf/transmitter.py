"""The Shared Signals transmitter: turns security signals into SETs for every stream that asked
for them, and ends relying parties' sessions by back-channel logout.

Producers never wait: `emit` (a `core.signals.SignalSink`) and `revoked` (told each entry of
the revocation log, whichever process wrote it) append to a bounded intake and return; this
object's own task does the work. A session watermark becomes session-revoked for that session,
a subject watermark session-revoked for every session of the user: every path that ends access
(logout, the console, the admin API, the CLI, the monitor's responses, a password change,
disabling a user) writes one of those, so none is missed. Each log entry is handled once in the
deployment: the first node to claim its sequence number in the shared replay cache handles it,
and an entry older than `MAX_SIGNAL_AGE` (a node catching up on an old log) is skipped.
Credential and claim changes are emitted by the services that make them.

Delivery: a push stream's SETs go to `Deliveries` (RFC 8935); a poll stream's wait in the
`SetQueue` (RFC 8936) and wake its long-polls. A paused stream holds its SETs in the queue and
sends them when enabled again; a disabled one drops them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.core.ports import SessionStore, SetQueue, SsfStreams
from tokenward.core.records import Revocation, RevocationKind, SsfStream
from tokenward.core.signals import SESSION_REVOKED, SYSTEM, SecuritySignal
from tokenward.oauth.client_auth import ReplayCache
from tokenward.oauth.ssf.backchannel import BackChannelLogout
from tokenward.oauth.ssf.delivery import Deliveries
from tokenward.oauth.ssf.events import (
    EVENT_TYPE,
    SET_TYPE,
    set_claims,
    verification_claims,
)
from tokenward.oauth.ssf.signing import TokenSigner
from tokenward.oauth.ssf.streams import PUSH
from tokenward.oauth.ssf.subjects import user_key

log = structlog.get_logger(__name__)
INTAKE = 10_000
MAX_SIGNAL_AGE = 600.0  # seconds: older log entries are history, not news
SUBJECT_QUIET = 60.0  # seconds after a user-wide session-revoked before the next one
HELD_FLUSH = 1000  # SETs a resumed push stream sends at once


class PollWakeups:
    """One event per stream that has a long-poll waiting: set when a SET is queued for it."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, stream_id: str) -> asyncio.Event:
        return self._events.setdefault(stream_id, asyncio.Event())

    def wake(self, stream_id: str) -> None:
        event = self._events.pop(stream_id, None)
        if event is not None:
            event.set()


class Transmitter:
    def __init__(
        self,
        issuer: str,
        streams: SsfStreams,
        queue: SetQueue,
        signer: TokenSigner,
        deliveries: Deliveries,
        sessions: SessionStore,
        backchannel: BackChannelLogout,
        claims: ReplayCache,
        clock: Callable[[], float] = time.time,
        capacity: int = INTAKE,
    ) -> None:
        """`claims`: the deployment's shared replay cache, where nodes claim log entries."""
        self._claims = claims
        self._issuer = issuer
        self._streams = streams
        self._queue = queue
        self._signer = signer
        self.deliveries = deliveries
        self._sessions = sessions
        self.backchannel = backchannel
        self._clock = clock
        self._intake: deque[SecuritySignal | tuple[int, Revocation]] = deque()
        self._capacity = capacity
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.wakeups = PollWakeups()
        self.dropped = 0
        self.sent = 0  # SETs made

    # --- intake (never blocks) ------------------------------------------------------------
    def emit(self, signal: SecuritySignal) -> None:
        self._take(signal)

    def revoked(self, seq: int, revocation: Revocation) -> None:
        if revocation.kind in (RevocationKind.SESSION, RevocationKind.SUBJECT):
            self._take((seq, revocation))

    def _take(self, item: SecuritySignal | tuple[int, Revocation]) -> None:
        if len(self._intake) >= self._capacity:
            self.dropped += 1
            return
        self._intake.append(item)
        self._idle.clear()
        self._wake.set()

    # --- Background -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.deliveries.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self.deliveries.stop()

    async def wait_idle(self) -> None:
        """Until every signal taken so far has been turned into SETs and logout tokens, and
        every delivery queued is done or given up (tests, docs)."""
        await self._idle.wait()
        await self.deliveries.wait_idle()

    async def _run(self) -> None:
        while True:
            if not self._intake:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._intake.popleft()
            try:
                await self._handle(item)
            except Exception:  # one bad signal (a store hiccup) must not stop the transmitter
                log.exception("ssf_signal_failed")

    async def _handle(self, entry: SecuritySignal | tuple[int, Revocation]) -> None:
        if isinstance(entry, SecuritySignal):
            await self.publish(entry)
            return
        seq, item = entry
        now = self._clock()
        when = item.issued_before if item.issued_before is not None else now
        if when < now - MAX_SIGNAL_AGE or item.expires_at <= now:
            return
        if not await self._claims.first_use(f"ssf-revocation:{seq}", item.expires_at):
            return  # handled already, here or on another node
        if item.kind == RevocationKind.SESSION:
            session = await self._sessions.get(item.value)
            if session is not None:
                await self.publish(
                    SecuritySignal(SESSION_REVOKED, when, session.user_id, item.value, SYSTEM)
                )
            await self.backchannel.session_ended(item.value)
        else:
            # At most one user-wide session-revoked per user per SUBJECT_QUIET: two servers
            # that receive each other's signals would otherwise revoke and tell each other
            # forever (each SET acted on writes a new subject watermark).
            quiet = await self._claims.first_use(f"ssf-subject:{item.value}", now + SUBJECT_QUIET)
            if quiet:
                await self.publish(SecuritySignal(SESSION_REVOKED, when, item.value, None, SYSTEM))
            await self.backchannel.user_logged_out(item.value)

    # --- SETs -------------------------------------------------------------------------------
    async def publish(self, signal: SecuritySignal) -> int:
        """One SET per stream that wants this event about this subject; how many."""
        event_type = EVENT_TYPE[signal.kind]
        subject = user_key(self._issuer, signal.subject)
        made = 0
        for stream in await self._streams.list_all():
            if stream.status == "disabled" or event_type not in stream.events_requested:
                continue
            if subject not in stream.subjects:
                continue
            claims = set_claims(self._issuer, stream.audience, signal, self._clock())
            await self._deliver(stream, claims["jti"], self._signer.sign(claims, SET_TYPE))
            made += 1
        self.sent += made
        return made

    async def verify(self, stream: SsfStream, state: str | None) -> None:
        """SSF §8.1.4: sent whatever the stream's subjects and requested events."""
        if stream.status == "disabled":
            return
        claims = verification_claims(
            self._issuer, stream.audience, stream.stream_id, state, self._clock()
        )
        await self._deliver(stream, claims["jti"], self._signer.sign(claims, SET_TYPE))

    async def enabled(self, stream: SsfStream) -> None:
        """A stream enabled again: a push stream sends the SETs it held while paused."""
        if stream.delivery_method != PUSH:
            return
        held, _more = await self._queue.pending(stream.stream_id, HELD_FLUSH)
        for _jti, token in held:
            self._push(stream, token)
        await self._queue.ack(stream.stream_id, [jti for jti, _ in held])

    async def _deliver(self, stream: SsfStream, jti: str, token: str) -> None:
        if stream.delivery_method == PUSH and stream.status == "enabled":
            self._push(stream, token)
            return
        await self._queue.enqueue(stream.stream_id, jti, token, self._clock())
        self.wakeups.wake(stream.stream_id)

    def _push(self, stream: SsfStream, token: str) -> None:
        headers = {"content-type": "application/secevent+jwt", "accept": "application/json"}
        if stream.authorization_header:
            headers["authorization"] = stream.authorization_header
        self.deliveries.submit(
            stream.endpoint_url, token.encode("ascii"), headers, f"ssf-push:{stream.stream_id}"
        )
