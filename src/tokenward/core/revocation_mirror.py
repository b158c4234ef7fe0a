"""The in-memory view of revocations that every validator checks on every request.

Lookups are plain dict reads; `generation` changes on every write so a cached token that was
checked at the current generation needs no new lookups (ARCHITECTURE.md, Revocation).
"""

from __future__ import annotations

from collections.abc import Awaitable

from tokenward.core.records import Revocation, RevocationKind

REVOKED_JTI = "the access token was revoked"
REVOKED_SUBJECT = "the subject's tokens were revoked"
REVOKED_SESSION = "the session ended"
REVOKED_CLIENT = "the client's tokens were revoked"


class RevocationMirror:
    __slots__ = (
        "applied_seq",
        "clients",
        "fresh_until",
        "generation",
        "jtis",
        "sessions",
        "subjects",
    )

    def __init__(self) -> None:
        self.jtis: dict[str, float] = {}  # jti -> forget after
        # watermark maps: value -> (issued_before, forget after)
        self.subjects: dict[str, tuple[float, float]] = {}
        self.sessions: dict[str, tuple[float, float]] = {}
        self.clients: dict[str, tuple[float, float]] = {}
        self.generation = 0
        self.applied_seq = 0  # every entry up to this sequence number has been applied
        # Past this instant the mirror may be missing revocations: validators fail closed.
        # Infinite for a mirror that is the store itself (embedded, one process).
        self.fresh_until = float("inf")

    def apply(self, revocation: Revocation, seq: int | None = None) -> None:
        self.record(
            revocation.kind, revocation.value, revocation.issued_before, revocation.expires_at, seq
        )

    def record(
        self,
        kind: str,
        value: str,
        issued_before: float | None,
        expires_at: float,
        seq: int | None = None,
    ) -> None:
        """`apply` by fields: for a follower that speaks the wire format, not the store's."""
        if kind == RevocationKind.JTI:
            self.jtis[value] = max(self.jtis.get(value, 0.0), expires_at)
        else:
            table = self._watermarks(kind)
            before = issued_before or 0.0
            old = table.get(value)
            if old is None or old[0] < before:  # watermarks only move forward
                table[value] = (before, max(expires_at, old[1] if old else 0.0))
        self.generation += 1
        if seq is not None:
            # Only ever set by an in-order feed (since(), or a contiguous pub/sub message); a
            # local write applies at once without a seq, so no gap can be skipped.
            self.applied_seq = max(self.applied_seq, seq)

    def reason(self, jti: str, sub: str, sid: str | None, client_id: str, iat: int) -> str | None:
        """Why a token is revoked, or None. Called on every cache hit whose generation is old."""
        if jti in self.jtis:
            return REVOKED_JTI
        mark = self.subjects.get(sub)
        if mark is not None and iat < mark[0]:
            return REVOKED_SUBJECT
        if sid is not None:
            mark = self.sessions.get(sid)
            if mark is not None and iat < mark[0]:
                return REVOKED_SESSION
        mark = self.clients.get(client_id)
        if mark is not None and iat < mark[0]:
            return REVOKED_CLIENT
        return None

    def ensure_following(self) -> Awaitable[None] | None:
        """Called on every validator miss. A mirror fed from elsewhere (the server's feed, a
        gateway's) has nothing to do here; `RemoteRevocations` starts following on first use,
        and returns something to await while its first snapshot is on the way."""
        return None

    def ensure_following_sync(self) -> None:
        """`ensure_following` for synchronous validation: it may block for the first snapshot."""

    def purge(self, now: float) -> int:
        """Forget entries every matching token of which has expired. Returns how many went."""
        dropped = 0
        for jti in [jti for jti, until in self.jtis.items() if until <= now]:
            del self.jtis[jti]
            dropped += 1
        for table in (self.subjects, self.sessions, self.clients):
            for value in [value for value, (_, until) in table.items() if until <= now]:
                del table[value]
                dropped += 1
        return dropped

    def _watermarks(self, kind: str) -> dict[str, tuple[float, float]]:
        if kind == RevocationKind.SUBJECT:
            return self.subjects
        if kind == RevocationKind.SESSION:
            return self.sessions
        if kind == RevocationKind.CLIENT:
            return self.clients
        raise ValueError(f"unknown revocation kind {kind!r}")
