"""The token endpoint (RFC 6749 §3.2): authenticate the client, then the handler of its grant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from tokenward.oauth.scopes import format_scope
from tokenward.store.records import ClientRecord
from tokenward.tokens.grant import IssuedAccessToken

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}  # RFC 6749 §5.1


@dataclass(frozen=True, slots=True)
class TokenRequest:
    params: Mapping[str, str]
    resources: tuple[str, ...] = ()
    authorization: str | None = field(default=None, repr=False)
    dpop: str | None = field(default=None, repr=False)
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: dict(NO_STORE))


def token_response(
    issued: IssuedAccessToken, refresh_token: str | None = None, **extra: Any
) -> TokenResponse:
    body: dict[str, Any] = {
        "access_token": issued.value,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
    }
    if issued.claims.scopes:
        body["scope"] = format_scope(issued.claims.scopes)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body.update(extra)
    return TokenResponse(body)


class GrantHandler(Protocol):
    grant_type: str

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse: ...


class TokenEndpoint:
    def __init__(
        self, authenticator: ClientAuthenticator, handlers: Iterable[GrantHandler]
    ) -> None:
        self._authenticator = authenticator
        self._handlers = {handler.grant_type: handler for handler in handlers}

    @property
    def grant_types(self) -> list[str]:
        return sorted(self._handlers)

    async def handle(self, request: TokenRequest) -> TokenResponse:
        client = await self._authenticator.authenticate(request.params, request.authorization)
        grant_type = request.params.get("grant_type")
        if grant_type is None:
            raise InvalidRequest("grant_type is required")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType("this server does not support that grant_type")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient("the client may not use this grant_type")
        return await handler.handle(request, client)
