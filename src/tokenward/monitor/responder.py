"""Responses to an alert, automatic or one click in the console: revoke the token (jti),
revoke the session or the subject (watermarks: every token issued up to now), block the address.

Revocations go through the same revocation store as the operator's (services/revoking.py), so
every local validator applies them before its next request and other processes catch up from
the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tokenward.core.blocklist import BlockRefused, IpBlocklist
from tokenward.core.ports import SessionStore
from tokenward.core.records import Revocation, RevocationKind
from tokenward.monitor.alerts import Target


class RevocationWriter(Protocol):
    async def revoke(self, revocation: Revocation) -> int: ...


class ResponseError(ValueError):
    """The response does not apply to this target (e.g. revoke_session without a session)."""


class Responder:
    def __init__(
        self,
        revocations: RevocationWriter,
        sessions: SessionStore,
        blocklist: IpBlocklist,
        *,
        keep: float,
        exempt: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`keep`: how long a revocation must be remembered (the longest token lifetime)."""
        self._revocations = revocations
        self._sessions = sessions
        self.blocklist = blocklist
        self._keep = keep
        self._exempt = _networks(exempt)
        self._clock = clock

    async def respond(
        self, action: str, target: Target, *, by: str, reason: str, block_seconds: float = 900.0
    ) -> dict[str, Any]:
        """Carry out one response; returns what was done, for the alert and the audit log."""
        now = self._clock()
        if action == "alert":
            return {"action": action, "by": by, "at": now, "done": "alert only"}
        if action == "revoke_token" and target.jti:
            await self._watermark(RevocationKind.JTI, target.jti, None, now)
            done = f"token {target.jti} revoked"
        elif action == "revoke_session" and target.sid:
            await self._sessions.end(target.sid, now)
            await self._watermark(RevocationKind.SESSION, target.sid, now, now)
            done = f"session {target.sid} ended; its tokens revoked"
        elif action == "revoke_subject" and target.sub:
            ended = await self.end_sessions(target.sub, now)
            await self._watermark(RevocationKind.SUBJECT, target.sub, now, now)
            done = f"every token of subject {target.sub} revoked; {ended} sessions ended"
        elif action == "block_ip" and target.ip:
            done = self._block(target.ip, block_seconds, reason, by)
        else:
            raise ResponseError(f"{action} does not apply to this alert's target")
        return {"action": action, "by": by, "at": now, "done": done}

    async def end_sessions(self, user_id: str, now: float) -> int:
        ended = 0
        for session in await self._sessions.for_user(user_id):
            if session.ended_at is None:
                await self._sessions.end(session.session_id, now)
                ended += 1
        return ended

    async def _watermark(self, kind: str, value: str, before: float | None, now: float) -> None:
        await self._revocations.revoke(Revocation(kind, value, before, now + self._keep))

    def _block(self, ip: str, seconds: float, reason: str, by: str) -> str:
        if _exempt(ip, self._exempt):
            return f"{ip} is in an exempt network: not blocked"
        try:
            entry = self.blocklist.block(ip, seconds, reason, by)
        except BlockRefused as exc:
            raise ResponseError(str(exc)) from None
        return f"{entry.ip} blocked for {seconds:g} s"


def _networks(cidrs: Sequence[str]) -> list[Any]:
    import ipaddress  # noqa: PLC0415 - only when exemptions are configured

    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def _exempt(ip: str, networks: Sequence[Any]) -> bool:
    if not networks:
        return False
    import ipaddress  # noqa: PLC0415

    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)
