"""Initial access tokens for dynamic client registration (RFC 7591 §3): the operator creates
one (`tokenward client registration-token create`, or the admin API) and hands it to whoever may
register clients. Shown once; only a keyed digest is kept. Each is bounded in time and, if
asked, in uses; the operator can revoke it."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from tokenward.core.ports import InitialAccessTokens
from tokenward.core.records import InitialAccessToken
from tokenward.oauth.client_auth import SecretHasher
from tokenward.services.errors import AdminError
from tokenward.services.views import iso_time

MIN_TTL, MAX_TTL = 60.0, 30 * 86400.0
MAX_USES = 100_000


class InitialTokenAdmin:
    def __init__(
        self, tokens: InitialAccessTokens, digests: SecretHasher, clock: Callable[[], float]
    ) -> None:
        """`digests`: the registration tokens' keyed digest (its own subkey of the master
        key, never the client secrets')."""
        self._tokens = tokens
        self._digests = digests
        self._clock = clock

    async def create(self, ttl: float = 86400.0, max_uses: int | None = None) -> dict[str, Any]:
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise AdminError(f"the lifetime must be {MIN_TTL:.0f} s to {MAX_TTL:.0f} s (30 days)")
        if max_uses is not None and not 1 <= max_uses <= MAX_USES:
            raise AdminError(f"max uses must be 1 to {MAX_USES} (or unlimited)")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        record = InitialAccessToken(
            token_id="iat-" + secrets.token_hex(6),
            digest=self._digests.digest(token),
            created_at=now,
            expires_at=now + ttl,
            max_uses=max_uses,
        )
        await self._tokens.save(record)
        return {**token_view(record), "token": token}  # shown once

    async def revoke(self, token_id: str) -> dict[str, Any]:
        if not await self._tokens.revoke(token_id):
            raise AdminError(f"no initial access token {token_id!r}")
        return {"token_id": token_id, "revoked": True}

    async def list(self) -> list[dict[str, Any]]:
        return [token_view(record) for record in await self._tokens.list_all()]


def token_view(record: InitialAccessToken) -> dict[str, Any]:
    """What an operator may see of an initial access token: never the token or its digest."""
    return {
        "token_id": record.token_id,
        "created_at": iso_time(record.created_at),
        "expires_at": iso_time(record.expires_at),
        "max_uses": record.max_uses,
        "uses": record.uses,
        "revoked": record.revoked,
    }
