"""SessionParticipants in memory: one process (tests, development, the memory backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tokenward.core.records import SessionParticipant


class MemorySessionParticipants:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], SessionParticipant] = {}

    async def add(self, participant: SessionParticipant) -> None:
        key = (participant.session_id, participant.client_id)
        known = self._rows.get(key)
        if known is not None and known.expires_at > participant.expires_at:
            participant = replace(participant, expires_at=known.expires_at)
        self._rows[key] = participant

    async def of_session(self, session_id: str, now: float) -> Sequence[SessionParticipant]:
        return [
            row
            for (sid, _), row in self._rows.items()
            if sid == session_id and row.expires_at > now
        ]

    async def of_user(self, user_id: str, now: float) -> Sequence[SessionParticipant]:
        return [
            row for row in self._rows.values() if row.user_id == user_id and row.expires_at > now
        ]

    async def purge(self, now: float) -> int:
        expired = [key for key, row in self._rows.items() if row.expires_at <= now]
        for key in expired:
            del self._rows[key]
        return len(expired)
