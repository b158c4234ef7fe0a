"""The device flow's approval pages (RFC 8628 §3.3): the pending request behind a user code,
and the user's decision on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenward.core.assurance import PWD, can_reach, satisfies, target
from tokenward.core.ports import ClientStore, DeviceStore
from tokenward.core.records import DeviceRecord
from tokenward.oauth.sessions import ActiveSession


@dataclass(frozen=True, slots=True)
class PendingDevice:
    record: DeviceRecord
    client_name: str
    min_acr: str | None = None  # the client's, as it is now (docs/second-factors.md)

    def reachable(self, methods: frozenset[str]) -> bool:
        """Whether a user with these factors can meet the client's minimum at all."""
        return can_reach(methods, self.min_acr)

    def missing(self, methods: frozenset[str], session: ActiveSession) -> str | None:
        """The level the approving session still lacks (the client's minimum, the user's
        floor, the device's `acr_values` as far as reachable), as on /authorize; None if
        it has what is needed."""
        level = target(methods, self.min_acr, self.record.acr_values)
        # A session from before levels were recorded was a password sign-in.
        if level is None or satisfies(session.record.acr or PWD, level):
            return None
        return level


class DeviceApproval:
    def __init__(
        self, devices: DeviceStore, clients: ClientStore, clock: Callable[[], float]
    ) -> None:
        self._devices = devices
        self._clients = clients
        self._clock = clock

    async def pending(self, user_code: str) -> PendingDevice | None:
        """The request still awaiting a decision under this (normalised) code, else None."""
        record = await self._devices.by_user_code(user_code) if user_code else None
        if record is None or record.status != "pending" or record.expires_at <= self._clock():
            return None
        client = await self._clients.get(record.client_id)
        if client is None:
            return PendingDevice(record, record.client_id)
        return PendingDevice(record, client.name or client.client_id, client.min_acr)

    async def decide(self, user_code: str, approved: bool, session: ActiveSession) -> bool:
        """False if the request was no longer pending. The session's level goes with the
        approval into the device's tokens (`acr`, and `amr` from it)."""
        return await self._devices.decide(
            user_code,
            approved,
            session.user.user_id,
            session.record.session_id,
            session.record.auth_time,
            self._clock(),
            acr=session.record.acr,
        )
