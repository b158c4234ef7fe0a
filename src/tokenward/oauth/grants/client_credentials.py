"""Client credentials grant (RFC 6749 §4.4): the client acts for itself; no refresh token."""

from __future__ import annotations

from tokenward.core.records import ClientRecord
from tokenward.oauth.errors import UnauthorizedClient
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.mtls import confirmation
from tokenward.oauth.resources import audience_for
from tokenward.oauth.scopes import granted_scopes, parse_scope
from tokenward.oauth.token_endpoint import TokenRequest, TokenResponse, token_response
from tokenward.tokens.grant import TokenGrant


class ClientCredentialsGrant:
    grant_type = "client_credentials"

    def __init__(self, issuer: AccessTokenIssuer, default_audience: str) -> None:
        self._issuer = issuer
        self._default_audience = default_audience

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse:
        if client.auth_method == "none":  # RFC 6749 §4.4: confidential clients only
            raise UnauthorizedClient("public clients cannot use client_credentials")
        scopes = granted_scopes(parse_scope(request.params.get("scope")), client.scopes)
        grant = TokenGrant(
            subject=client.client_id,  # RFC 9068 §2.2: sub is the client when no user is involved
            client_id=client.client_id,
            audience=audience_for(request.resources, client, self._default_audience),
            scopes=scopes,
            lifetime=client.access_token_lifetime,
            cnf=confirmation(request.dpop_jkt, request.x5t_s256),
        )
        return token_response(await self._issuer.issue(client, grant))
