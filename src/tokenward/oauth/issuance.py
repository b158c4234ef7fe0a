"""Mints access tokens in the format each client is registered for (JWT or opaque)."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from tokenward.core.records import ClientRecord
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant


class AccessTokenStrategy(Protocol):
    format: str

    async def mint(self, grant: TokenGrant) -> IssuedAccessToken: ...


class AccessTokenIssuer:
    def __init__(self, strategies: dict[str, AccessTokenStrategy]) -> None:
        self._strategies = strategies

    async def issue(self, client: ClientRecord, grant: TokenGrant) -> IssuedAccessToken:
        if client.access_token_alg is not None and grant.signing_alg is None:
            grant = replace(grant, signing_alg=client.access_token_alg)
        issued = await self._strategies[client.token_format].mint(grant)
        if grant.cnf and grant.cnf.get("jkt"):
            return replace(issued, token_type="DPoP")  # RFC 9449 §5: bound tokens say so
        return issued
