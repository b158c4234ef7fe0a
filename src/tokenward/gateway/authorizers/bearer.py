"""`auth: bearer`: the client's own `Authorization: Bearer` token (RFC 6750 §2.1)."""

from __future__ import annotations

from starlette.types import Scope

from tokenward.core.errors import InvalidRequest
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.authorizers.base import Authorized
from tokenward.gateway.authorizers.tokens import Tokens
from tokenward.gateway.headers import IdentityHeaders, Incoming
from tokenward.gateway.model import Route
from tokenward.gateway.policy import check_token
from tokenward.resource.asgi import DUPLICATE_AUTHORIZATION, certificate_of


class Bearer:
    __slots__ = ("_identity", "_route", "_tokens")

    def __init__(self, route: Route, tokens: Tokens, identity: IdentityHeaders) -> None:
        self._route = route
        self._tokens = tokens
        self._identity = identity

    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        values = incoming.authorization
        if len(values) > 1:
            raise InvalidRequest(DUPLICATE_AUTHORIZATION)
        header = values[0].decode("latin-1") if values else None
        token = await self._tokens.verify(header, certificate_of(scope))
        # Verified: a refusal for scope or audience is attributed (audit, usage monitor),
        # so privilege probing with a valid token is seen as this subject's.
        record.token = token
        check_token(self._route, token)
        return scope, token, self._identity(token)
