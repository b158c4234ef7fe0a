"""Mints the token response of a user grant: access token, refresh token, ID token."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from tokenward.core.records import ClientRecord, FamilyRecord, MintedToken
from tokenward.oauth.errors import InvalidClient, InvalidGrant
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.mtls import confirmation
from tokenward.oauth.refresh import NewFamily, RefreshTokens
from tokenward.oauth.token_endpoint import TokenResponse, token_response
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant
from tokenward.tokens.id_token import IdTokenClaims, IdTokenSigner

log = structlog.get_logger(__name__)


def no_id_token_key(client: ClientRecord, alg: str) -> InvalidClient:
    """The client's id_token_signed_response_alg has no active key here: refused rather than
    signed in another algorithm (which the client would refuse, OIDC Core §3.1.3.7), logged
    for the operator, who fixes it (TOKENWARD_SIGNING_ALGS)."""
    log.error("no_signing_key", client_id=client.client_id, alg=alg)
    return InvalidClient(
        f"this server holds no active {alg[:20]} signing key, which the client's ID tokens are "
        f"registered for; the operator must add {alg[:20]} to TOKENWARD_SIGNING_ALGS"
    )


@dataclass(frozen=True, slots=True)
class UserGrant:
    user_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    session_id: str | None
    auth_time: float | None
    acr: str | None = None
    nonce: str | None = None
    dpop_jkt: str | None = None
    x5t_s256: str | None = None  # RFC 8705 §3: the client certificate tokens are bound to


class UserTokenMinter:
    def __init__(
        self, issuer: AccessTokenIssuer, refresh: RefreshTokens, id_tokens: IdTokenSigner
    ) -> None:
        self._issuer = issuer
        self.refresh = refresh
        self._id_tokens = id_tokens

    async def record(self, family: FamilyRecord, access: IssuedAccessToken) -> None:
        """Remember an access token on its family, so revoking the family denies it."""
        await self.refresh.grants.add_minted(
            family.family_id, MintedToken(access.claims.jti, float(access.claims.exp))
        )

    def new_family(self, client: ClientRecord, grant: UserGrant) -> NewFamily | None:
        """The family this grant would start, not stored yet; None if the client may not
        refresh. `respond(refresh_value=...)` then answers with its refresh token."""
        if "refresh_token" not in client.grant_types:
            return None
        return self.refresh.new_family(
            client,
            user_id=grant.user_id,
            scopes=grant.scopes,
            audience=grant.audience,
            session_id=grant.session_id,
            auth_time=grant.auth_time,
            acr=grant.acr,
            dpop_jkt=grant.dpop_jkt,
        )

    async def access(self, client: ClientRecord, grant: UserGrant) -> IssuedAccessToken:
        """Every user grant mints here: one whose scopes the client is no longer registered
        for (a code or refresh family from before its registration narrowed) gets nothing."""
        if not grant.scopes <= client.scopes:
            raise InvalidGrant("the grant holds scopes the client is no longer registered for")
        return await self._issuer.issue(
            client,
            TokenGrant(
                subject=grant.user_id,
                client_id=client.client_id,
                audience=grant.audience,
                scopes=grant.scopes,
                session_id=grant.session_id,
                auth_time=int(grant.auth_time) if grant.auth_time is not None else None,
                acr=grant.acr,
                cnf=confirmation(grant.dpop_jkt, grant.x5t_s256),
                lifetime=client.access_token_lifetime,
            ),
        )

    async def respond(
        self,
        client: ClientRecord,
        grant: UserGrant,
        *,
        refresh_value: str | None = None,
        family: FamilyRecord | None = None,
        with_id_token: bool = False,
        access: IssuedAccessToken | None = None,
    ) -> tuple[TokenResponse, IssuedAccessToken, FamilyRecord | None]:
        """The response; starts a family when the client may refresh and none was given.
        `access`: already minted (and recorded on its family) by the caller."""
        if (
            with_id_token
            and "openid" in grant.scopes
            and not self._id_tokens.can_sign(client.id_token_alg)
        ):  # before anything is minted or recorded: nothing half-issued to clean up
            raise no_id_token_key(client, client.id_token_alg)
        if access is None:
            access = await self.access(client, grant)
        new = self.new_family(client, grant) if refresh_value is None else None
        if new is not None:
            await self.refresh.grants.create(new.family, new.first)
            refresh_value, family = new.value, new.family
        if family is not None:
            await self.record(family, access)
        extra = {}
        if with_id_token and "openid" in grant.scopes:
            claims = IdTokenClaims(
                subject=grant.user_id,
                client_id=client.client_id,
                auth_time=int(grant.auth_time) if grant.auth_time is not None else None,
                session_id=grant.session_id,
                nonce=grant.nonce,
                acr=grant.acr,
            )
            try:
                extra["id_token"] = self._id_tokens.sign(claims, client.id_token_alg, access.value)
            except NoSigningKey as exc:  # the key retired between the check above and now
                raise no_id_token_key(client, exc.alg) from None
        return token_response(access, refresh_value, **extra), access, family
