"""Refresh tokens: opaque, stored as digests, rotated on every use within a grant family.

A successor is derived, not drawn: HMAC(subkey, predecessor). So a parallel repeat of the
immediate predecessor inside the grace window gets the very same successor (no second branch),
and nothing but digests is ever stored. Whoever rotates that successor second is still caught.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenward.core.ports import GrantStore, RevocationStore
from tokenward.core.records import (
    ClientRecord,
    FamilyRecord,
    MintedToken,
    RefreshRecord,
    Revocation,
    RevocationKind,
)
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.tokens.b64 import b64url_encode

PREFIX = "twr_"
FAMILY_MAX_LIFETIME = 365 * 86400


def refresh_digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


async def lookup(grants: GrantStore, value: str) -> tuple[RefreshRecord, FamilyRecord] | None:
    """The refresh token `value` and its family, as stored; None if there is none."""
    # Every refresh token we issue starts with PREFIX: anything else (an access token, a
    # stranger's string) is not one, and costs no database read to say so.
    if not value.startswith(PREFIX):
        return None
    return await grants.lookup(refresh_digest(value))


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: str  # RotationOutcome
    family: FamilyRecord | None
    successor: str | None = None


@dataclass(frozen=True, slots=True)
class NewFamily:
    value: str  # the first refresh token, for the client; only its digest is stored
    family: FamilyRecord
    first: RefreshRecord


class RefreshTokens:
    def __init__(
        self,
        grants: GrantStore,
        key: bytes,
        *,
        grace: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.grants = grants
        self._key = key
        self._grace = grace
        self._clock = clock

    def successor_of(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode("utf-8", "replace"), hashlib.sha256).digest()
        return PREFIX + b64url_encode(mac)

    def new_family(
        self,
        client: ClientRecord,
        *,
        user_id: str,
        scopes: frozenset[str],
        audience: tuple[str, ...],
        session_id: str | None,
        auth_time: float | None,
        acr: str | None = None,
        dpop_jkt: str | None = None,
    ) -> NewFamily:
        """A family and its first refresh token, not stored yet (the caller stores them)."""
        now = self._clock()
        family = FamilyRecord(
            family_id=secrets.token_urlsafe(16),
            client_id=client.client_id,
            user_id=user_id,
            scopes=scopes,
            audience=audience,
            created_at=now,
            expires_at=now + FAMILY_MAX_LIFETIME,
            session_id=session_id,
            auth_time=auth_time,
            acr=acr,
            dpop_jkt=dpop_jkt,
        )
        value = PREFIX + secrets.token_urlsafe(32)
        return NewFamily(value, family, self._record(value, family, client, now))

    async def rotate(
        self,
        value: str,
        family: FamilyRecord,
        client: ClientRecord,
        minted: MintedToken | None = None,
    ) -> Rotation:
        """`minted`: the access token to answer with, recorded on the family in the rotation's
        own transaction (one commit per refresh) when the rotation is delivered."""
        now = self._clock()
        successor = self.successor_of(value)
        outcome, current, _ = await self.grants.rotate(
            refresh_digest(value),
            self._record(successor, family, client, now),
            now,
            self._grace,
            minted,
        )
        return Rotation(outcome, current, successor)

    def _record(
        self, value: str, family: FamilyRecord, client: ClientRecord, now: float
    ) -> RefreshRecord:
        expires = min(now + client.refresh_token_lifetime, family.expires_at)
        return RefreshRecord(refresh_digest(value), family.family_id, now, expires)


class RefreshAdmin:
    """Refresh tokens at the introspection and revocation endpoints (RFC 7662, RFC 7009 §2.1)."""

    def __init__(
        self,
        grants: GrantStore,
        revocations: RevocationStore,
        mirror: RevocationMirror,
        leeway: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._grants = grants
        self._revocations = revocations
        self._mirror = mirror
        self._leeway = leeway
        self._clock = clock

    async def introspect(self, value: str) -> dict[str, Any] | None:
        found = await lookup(self._grants, value)
        if found is None:
            return None
        token, family = found
        now = self._clock()
        revoked = self._mirror.reason(
            "", family.user_id, family.session_id, family.client_id, int(family.created_at)
        )
        if (
            token.rotated_at is not None
            or family.revoked_at is not None
            or token.expires_at <= now
            or revoked
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": family.client_id,
            "sub": family.user_id,
            "scope": " ".join(sorted(family.scopes)),
            "exp": int(token.expires_at),
            "iat": int(token.created_at),
        }

    async def revoke(self, value: str, client: ClientRecord) -> bool:
        found = await lookup(self._grants, value)
        if found is None or found[1].client_id != client.client_id:
            return False
        minted = await self._grants.revoke_family(found[1].family_id, self._clock())
        for token in minted:
            await self._revocations.revoke(
                Revocation(RevocationKind.JTI, token.jti, None, token.expires_at + self._leeway)
            )
        return True
