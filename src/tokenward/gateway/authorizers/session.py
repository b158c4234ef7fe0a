"""`auth: bff`: a browser's session cookie stands for the token the gateway holds for it
(gateway/bff.py); the token is then checked like a bearer token."""

from __future__ import annotations

from starlette.types import Scope

from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.authorizers.base import Authorized
from tokenward.gateway.authorizers.tokens import Tokens
from tokenward.gateway.bff import Bff, parse_cookies
from tokenward.gateway.headers import IdentityHeaders, Incoming
from tokenward.gateway.model import Route


class BffSession:
    __slots__ = ("_bff", "_identity", "_route", "_tokens")

    def __init__(self, route: Route, tokens: Tokens, bff: Bff, identity: IdentityHeaders) -> None:
        self._route = route
        self._tokens = tokens
        self._bff = bff
        self._identity = identity

    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        header = await self._bff.authorization(scope, parse_cookies(scope["headers"]))
        token = await self._tokens.authenticate(self._route, header)
        record.token = token
        return scope, token, self._identity(token)
