"""In-process backends of the flow stores: sessions, codes, grant families, devices, consent.

Single-threaded asyncio makes each method atomic (no await inside a read-modify-write).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from tokenward.core.records import (
    CodeRecord,
    DeviceRecord,
    FamilyRecord,
    MintedToken,
    PushedRequest,
    RefreshRecord,
    RotationOutcome,
    SessionRecord,
)
from tokenward.core.rotation import ended, within_grace


class MemorySessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}

    async def put(self, session: SessionRecord) -> None:
        self._sessions[session.session_id] = session

    async def get(self, session_id: str) -> SessionRecord | None:
        return self._sessions.get(session_id)

    async def by_secret(self, secret_digest: str) -> SessionRecord | None:
        return next((s for s in self._sessions.values() if s.secret_digest == secret_digest), None)

    async def end(self, session_id: str, now: float) -> SessionRecord | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.ended_at is None:
            session = self._sessions[session_id] = replace(session, ended_at=now)
        return session

    async def for_user(self, user_id: str) -> Sequence[SessionRecord]:
        return [s for s in self._sessions.values() if s.user_id == user_id]


class MemoryCodeStore:
    """`grants`: where `redeem` creates the family, in the same synchronous step."""

    def __init__(self, grants: MemoryGrantStore) -> None:
        self._codes: dict[str, CodeRecord] = {}
        self._grants = grants

    async def save(self, code: CodeRecord) -> None:
        self._codes[code.digest] = code

    def _consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        code = self._codes.get(digest)
        if code is None:
            return None, False
        if code.consumed_at is not None:
            if code.replayed_at is None:
                code = self._codes[digest] = replace(code, replayed_at=now)
            return code, False
        self._codes[digest] = replace(code, consumed_at=now)
        return code, True

    async def peek(self, digest: str) -> CodeRecord | None:
        return self._codes.get(digest)

    async def exchange(
        self,
        digest: str,
        now: float,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> tuple[bool, CodeRecord | None]:
        record, first_use = self._consume(digest, now)  # no await in between: one step
        if not first_use:
            return False, record
        self._redeem(digest, minted, grant)
        return True, None

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        return self._consume(digest, now)

    async def redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        return self._redeem(digest, minted, grant)

    def _redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        code = self._codes.get(digest)
        if (
            code is None
            or code.consumed_at is None
            or code.replayed_at is not None
            or code.access_jti is not None
        ):
            return False
        family_id = None
        if grant is not None:
            family, first = grant
            family_id = family.family_id
            self._grants.start(family, first, minted)  # no await: nothing runs in between
        self._codes[digest] = replace(
            code, family_id=family_id, access_jti=minted.jti, access_exp=minted.expires_at
        )
        return True


class MemoryGrantStore:
    def __init__(self) -> None:
        self._families: dict[str, FamilyRecord] = {}
        self._tokens: dict[str, RefreshRecord] = {}
        self._minted: dict[str, list[MintedToken]] = {}
        self._family_of: dict[str, str] = {}  # jti -> family, for every token in _minted

    async def create(self, family: FamilyRecord, first: RefreshRecord) -> None:
        self.start(family, first)

    def start(
        self, family: FamilyRecord, first: RefreshRecord, minted: MintedToken | None = None
    ) -> None:
        """`create` (and `add_minted`) without suspending: what MemoryCodeStore.redeem needs."""
        self._families[family.family_id] = family
        self._tokens[first.digest] = first
        if minted is not None:
            self._minted[family.family_id] = [minted]
            self._family_of[minted.jti] = family.family_id

    async def rotate(
        self,
        digest: str,
        successor: RefreshRecord,
        now: float,
        grace: float,
        minted: MintedToken | None = None,
    ) -> tuple[str, FamilyRecord | None, RefreshRecord | None]:
        outcome, family, token = self._rotate(digest, successor, now, grace)
        if minted is not None and family is not None and outcome in RotationOutcome.DELIVERED:
            await self.add_minted(family.family_id, minted)
        return outcome, family, token

    def _rotate(
        self, digest: str, successor: RefreshRecord, now: float, grace: float
    ) -> tuple[str, FamilyRecord | None, RefreshRecord | None]:
        token = self._tokens.get(digest)
        family = self._families.get(token.family_id) if token else None
        if token is None or family is None:
            return RotationOutcome.INVALID, None, None
        if ended(family, token, now):
            return RotationOutcome.INVALID, family, token
        if token.rotated_at is None:
            self._tokens[digest] = replace(token, rotated_at=now, successor_digest=successor.digest)
            self._tokens[successor.digest] = successor
            return RotationOutcome.ROTATED, family, token
        following = self._tokens.get(token.successor_digest or "")
        current = following is not None and following.rotated_at is None
        if within_grace(token, current, now, grace):
            return RotationOutcome.GRACE, family, token
        self._families[family.family_id] = replace(family, revoked_at=now)
        return RotationOutcome.REUSED, family, token

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        token = self._tokens.get(digest)
        family = self._families.get(token.family_id) if token else None
        return (token, family) if token is not None and family is not None else None

    async def revoke_family(self, family_id: str, now: float) -> Sequence[MintedToken]:
        family = self._families.get(family_id)
        if family is not None and family.revoked_at is None:
            self._families[family_id] = replace(family, revoked_at=now)
        return [token for token in self._minted.get(family_id, []) if token.expires_at > now]

    async def add_minted(self, family_id: str, token: MintedToken) -> None:
        kept: list[MintedToken] = []
        for old in self._minted.get(family_id, []):
            if old.expires_at > token.expires_at - 86400 and old.jti != token.jti:
                kept.append(old)
            elif self._family_of.get(old.jti) == family_id:
                del self._family_of[old.jti]
        self._minted[family_id] = [*kept, token]
        self._family_of[token.jti] = family_id

    async def family_of(self, jti: str) -> str | None:
        return self._family_of.get(jti)

    async def link(self, family_id: str, token: MintedToken) -> bool:
        family = self._families.get(family_id)
        if family is None or family.revoked_at is not None:
            return False
        await self.add_minted(family_id, token)  # no await point before it: atomic here
        return True


class MemoryDeviceStore:
    def __init__(self) -> None:
        self._by_digest: dict[str, DeviceRecord] = {}

    async def save(self, record: DeviceRecord) -> None:
        self._by_digest[record.device_digest] = record

    async def by_user_code(self, user_code: str) -> DeviceRecord | None:
        return next((r for r in self._by_digest.values() if r.user_code == user_code), None)

    async def decide(
        self,
        user_code: str,
        approved: bool,
        user_id: str,
        session_id: str,
        auth_time: float,
        now: float,
        *,
        acr: str | None,
    ) -> bool:
        record = await self.by_user_code(user_code)
        if record is None or record.status != "pending" or record.expires_at <= now:
            return False
        self._by_digest[record.device_digest] = replace(
            record,
            status="approved" if approved else "denied",
            user_id=user_id,
            session_id=session_id,
            auth_time=auth_time,
            acr=acr,
        )
        return True

    async def poll(self, device_digest: str, now: float) -> tuple[DeviceRecord | None, bool]:
        record = self._by_digest.get(device_digest)
        if record is None:
            return None, False
        if record.status == "approved":
            self._by_digest[device_digest] = replace(record, last_poll_at=now, status="consumed")
            return record, False
        too_fast = record.last_poll_at is not None and now - record.last_poll_at < record.interval
        interval = record.interval + 5 if too_fast else record.interval
        self._by_digest[device_digest] = replace(record, last_poll_at=now, interval=interval)
        return record, too_fast


class MemoryConsentStore:
    def __init__(self) -> None:
        self._granted: dict[tuple[str, str], frozenset[str]] = {}

    async def granted(self, user_id: str, client_id: str) -> frozenset[str]:
        return self._granted.get((user_id, client_id), frozenset())

    async def grant(self, user_id: str, client_id: str, scopes: frozenset[str]) -> None:
        key = (user_id, client_id)
        self._granted[key] = self._granted.get(key, frozenset()) | scopes

    async def withdraw(self, user_id: str, client_id: str) -> None:
        self._granted.pop((user_id, client_id), None)


class MemoryPushedRequestStore:
    """Expired requests are dropped every PURGE_EVERY saves, so pushes nobody redeems do not
    pile up."""

    PURGE_EVERY = 256

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._requests: dict[str, PushedRequest] = {}
        self._clock = clock
        self._saves = 0

    async def save(self, request: PushedRequest) -> None:
        self._saves += 1
        if self._saves % self.PURGE_EVERY == 0:
            now = self._clock()
            self._requests = {k: r for k, r in self._requests.items() if r.expires_at > now}
        self._requests[request.digest] = request

    async def take(self, digest: str, client_id: str, now: float) -> PushedRequest | None:
        found = self._requests.get(digest)
        if found is None or found.client_id != client_id:
            return None
        del self._requests[digest]  # used or expired: either way it is gone
        return found if found.expires_at > now else None
