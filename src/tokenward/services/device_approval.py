"""The device flow's approval pages (RFC 8628 §3.3): the pending request behind a user code,
and the user's decision on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenward.core.ports import ClientStore, DeviceStore
from tokenward.core.records import DeviceRecord
from tokenward.oauth.sessions import ActiveSession


@dataclass(frozen=True, slots=True)
class PendingDevice:
    record: DeviceRecord
    client_name: str


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
        name = (client.name or client.client_id) if client else record.client_id
        return PendingDevice(record, name)

    async def decide(self, user_code: str, approved: bool, session: ActiveSession) -> bool:
        """False if the request was no longer pending."""
        return await self._devices.decide(
            user_code,
            approved,
            session.user.user_id,
            session.record.session_id,
            session.record.auth_time,
            self._clock(),
        )
