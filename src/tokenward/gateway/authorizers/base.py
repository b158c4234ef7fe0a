"""What the gateway asks of a route's authorizer, whatever the route's `auth:` mode."""

from __future__ import annotations

from typing import Protocol

from starlette.types import Scope

from tokenward.core.claims import AccessToken
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.headers import Incoming

Headers = list[tuple[bytes, bytes]]
# The scope to forward (a signed link's is rewritten), the verified token if the mode has one,
# and the headers to add upstream (the caller appends to the list).
Authorized = tuple[Scope, AccessToken | None, Headers]


class RouteAuthorizer(Protocol):
    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        """Admit the request or refuse it by raising (`Denied`, `BearerError`, `DpopRefused`).
        `record.token` is set to the verified token, for audit and usage."""
        ...
