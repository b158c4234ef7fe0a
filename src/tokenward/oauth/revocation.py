"""Token revocation (RFC 7009). Unknown tokens answer 200 (§2.2); a JWT access token goes on
the jti denylist until it would have expired anyway; a refresh token revokes its whole family."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from tokenward.core.client_certs import ClientCertificate
from tokenward.core.errors import BearerError
from tokenward.core.ports import AccessTokenStore, RevocationStore, TokenVerifier
from tokenward.core.records import ClientRecord, MintedToken, Revocation, RevocationKind
from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import InvalidRequest, UnsupportedTokenType
from tokenward.tokens.opaque import PREFIX as OPAQUE_PREFIX
from tokenward.tokens.opaque import token_digest

HINTS = frozenset({"access_token", "refresh_token"})
# Revokes a refresh token (and its family) if it is one of the caller's; True when it was.
RefreshRevoker = Callable[[str, ClientRecord], Awaitable[bool]]


class Revoker:
    def __init__(
        self,
        authenticator: ClientAuthenticator,
        validator: TokenVerifier,
        revocations: RevocationStore,
        opaque_tokens: AccessTokenStore,
        leeway: float,
        *,
        refresh_revoker: RefreshRevoker | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._validator = validator  # any audience: we revoke what we issued, for every resource
        self._revocations = revocations
        self._opaque_tokens = opaque_tokens
        self._leeway = leeway
        self.refresh_revoker = refresh_revoker  # None: refresh tokens are not revoked here

    async def revoke(
        self,
        params: Mapping[str, str],
        authorization: str | None,
        certificate: ClientCertificate | None = None,
    ) -> None:
        client = await self._authenticator.authenticate(params, authorization, certificate)
        token = params.get("token")
        if token is None:
            raise InvalidRequest("token is required")
        hint = params.get("token_type_hint")
        if hint is not None and hint not in HINTS:
            raise UnsupportedTokenType("token_type_hint must be access_token or refresh_token")
        # The hint only orders the search (RFC 7009 §2.1); a wrong hint still revokes.
        if hint == "refresh_token" and await self._revoke_refresh(token, client):
            return
        if await self._revoke_access(token, client):
            return
        await self._revoke_refresh(token, client)

    async def _revoke_refresh(self, token: str, client: ClientRecord) -> bool:
        return self.refresh_revoker is not None and await self.refresh_revoker(token, client)

    async def _revoke_access(self, token: str, client: ClientRecord) -> bool:
        try:
            access = await self._validator.inspect(token)
        except BearerError:
            return False  # unknown, malformed, expired or already revoked: 200 all the same
        if access.client_id != client.client_id:
            return False  # RFC 7009 §2.1: only the client the token was issued to may revoke it
        if token.startswith(OPAQUE_PREFIX):
            await self._opaque_tokens.delete(token_digest(token))
        await self._revocations.revoke(
            Revocation(RevocationKind.JTI, access.jti, None, access.exp + self._leeway)
        )
        return True


async def deny_minted(
    revocations: RevocationStore, minted: Sequence[MintedToken], leeway: float
) -> None:
    """Put access tokens a family or code minted on the denylist, until they would expire."""
    for token in minted:
        await revocations.revoke(
            Revocation(RevocationKind.JTI, token.jti, None, token.expires_at + leeway)
        )
