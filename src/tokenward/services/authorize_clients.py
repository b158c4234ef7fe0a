"""The client of an authorization request resumed from a sealed interaction (sign-in, consent):
it may have been disabled or deleted since the request began."""

from __future__ import annotations

from tokenward.core.ports import ClientStore
from tokenward.core.records import ClientRecord


class ResumedClients:
    def __init__(self, clients: ClientStore) -> None:
        self._clients = clients

    async def usable(self, client_id: str) -> ClientRecord | None:
        client = await self._clients.get(client_id)
        return None if client is None or not client.active else client
