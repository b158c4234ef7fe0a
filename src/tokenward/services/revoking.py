"""Revocation by the operator: one token (jti) or watermarks for a subject, session or client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tokenward.core.records import Revocation, RevocationKind
from tokenward.services.errors import AdminError
from tokenward.services.views import iso_time


class RevocationWriter(Protocol):
    async def revoke(self, revocation: Revocation) -> int: ...


class Watermarks:
    """`keep`: seconds after which every token issued up to now has expired (the longest access
    token lifetime plus leeway, or the refresh token lifetime if longer); then the entry is
    forgotten."""

    def __init__(
        self, revocations: RevocationWriter, keep: float, clock: Callable[[], float]
    ) -> None:
        self._revocations = revocations
        self._keep = keep
        self._clock = clock

    async def revoke(
        self,
        *,
        jti: str | None = None,
        subject: str | None = None,
        session: str | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        """Watermarks revoke every token issued up to now; they are forgotten once those expired."""
        now = self._clock()
        forget_after = now + self._keep
        targets = [
            (RevocationKind.SUBJECT, subject),
            (RevocationKind.SESSION, session),
            (RevocationKind.CLIENT, client),
        ]
        done: list[dict[str, Any]] = []
        if jti is not None:
            seq = await self._revocations.revoke(
                Revocation(RevocationKind.JTI, jti, None, forget_after)
            )
            done.append({"kind": "jti", "value": jti, "seq": seq})
        for kind, value in targets:
            if value is not None:
                seq = await self._revocations.revoke(Revocation(kind, value, now, forget_after))
                done.append({"kind": kind, "value": value, "issued_before": now, "seq": seq})
        if not done:
            raise AdminError("say what to revoke: --token, --subject, --session or --client")
        return {"revoked": done, "at": iso_time(now)}
