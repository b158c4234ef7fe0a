"""`auth: none`: nothing is checked; the client's Authorization goes upstream as it came."""

from __future__ import annotations

from starlette.types import Scope

from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.authorizers.base import Authorized
from tokenward.gateway.headers import Incoming


class PassThrough:
    __slots__ = ()

    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        return scope, None, [(b"authorization", value) for value in incoming.authorization]
