"""Refresh token grant (RFC 6749 §6, OAuth 2.1 §4.3.1) with rotation and reuse detection; under
a profile that says so (fapi2, oauth/profiles.py) without rotation, the token bound instead."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from tokenward.core.events import REFRESH_REUSE, AuthEvent, AuthEventSink
from tokenward.core.ports import RevocationStore, UserStore
from tokenward.core.records import ClientRecord, FamilyRecord, MintedToken, RotationOutcome
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.oauth.errors import InvalidGrant, InvalidRequest, InvalidScope
from tokenward.oauth.profiles import Profiles
from tokenward.oauth.refresh import lookup
from tokenward.oauth.revocation import deny_minted
from tokenward.oauth.scopes import parse_scope
from tokenward.oauth.token_endpoint import TokenRequest, TokenResponse
from tokenward.oauth.user_tokens import UserGrant, UserTokenMinter

log = structlog.get_logger(__name__)


class RefreshTokenGrant:
    grant_type = "refresh_token"

    def __init__(
        self,
        minter: UserTokenMinter,
        users: UserStore,
        revocations: RevocationStore,
        mirror: RevocationMirror,
        leeway: float,
        clock: Callable[[], float] = time.time,
        events: AuthEventSink | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self._profiles = profiles or Profiles()
        self._minter = minter
        self._refresh = minter.refresh
        self._users = users
        self._revocations = revocations
        self._mirror = mirror
        self._leeway = leeway
        self._clock = clock
        self._events = events

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse:
        value = request.params.get("refresh_token")
        if value is None:
            raise InvalidRequest("refresh_token is required")
        found = await lookup(self._refresh.grants, value)
        if found is None or found[1].client_id != client.client_id:
            raise InvalidGrant("the refresh token is invalid")
        token, family = found
        await self._check_family(family, client)
        if family.dpop_jkt is not None and family.dpop_jkt != request.dpop_jkt:
            raise InvalidGrant("the refresh token is bound to another DPoP key")  # RFC 9449 §5
        scopes = parse_scope(request.params.get("scope"))
        if scopes is not None and not scopes <= family.scopes:  # RFC 6749 §6: never widen
            raise InvalidScope("a refresh may narrow the scope, never widen it")
        grant = UserGrant(
            user_id=family.user_id,
            scopes=scopes if scopes is not None else family.scopes,
            audience=family.audience,
            session_id=family.session_id,
            auth_time=family.auth_time,
            acr=family.acr,
            dpop_jkt=request.dpop_jkt,
            x5t_s256=request.x5t_s256,
        )
        if not self._profiles.for_client(client).rotate_refresh_tokens:
            # FAPI 2.0 §5.3.2.1: no rotation; the token stays bound to the client (and to the
            # DPoP key, checked above), so a lost response costs the client nothing.
            if token.rotated_at is not None or token.expires_at <= self._clock():
                raise InvalidGrant("the refresh token is invalid")
            access = await self._minter.access(client, grant)
            await self._minter.record(family, access)
            response, _access, _family = await self._minter.respond(
                client, grant, refresh_value=value, access=access
            )
            return response
        # Mint the access token before rotating, and record it on the family in the rotation's
        # own transaction: once the rotation commits, nothing may fail before the answer, or
        # the client never sees the successor and its retry counts as reuse (the family
        # revoked, the user signed out). A rotation that is not delivered records nothing.
        access = await self._minter.access(client, grant)
        minted = MintedToken(access.claims.jti, float(access.claims.exp))
        rotation = await self._refresh.rotate(value, family, client, minted)
        if rotation.outcome == RotationOutcome.REUSED:
            await self._revoke_family(family)
            log.warning("refresh_token_reuse", family=family.family_id, client_id=client.client_id)
            self._report_reuse(family, request)
            raise InvalidGrant("the refresh token was already used; the grant is revoked")
        if rotation.outcome not in (RotationOutcome.ROTATED, RotationOutcome.GRACE):
            raise InvalidGrant("the refresh token is invalid")
        response, _access, _family = await self._minter.respond(
            client, grant, refresh_value=rotation.successor, access=access
        )
        return response

    def _report_reuse(self, family: FamilyRecord, request: TokenRequest) -> None:
        if self._events is not None:
            self._events.emit(
                AuthEvent(
                    time=self._clock(),
                    kind=REFRESH_REUSE,
                    ip=request.client_ip,
                    sub=family.user_id,
                    client_id=family.client_id,
                    sid=family.session_id,
                    family_id=family.family_id,
                )
            )

    async def _check_family(self, family: FamilyRecord, client: ClientRecord) -> None:
        """Watermarks (password change, logout, admin, client disabled or narrowed) apply to
        families too; so does the client's registration as it stands: a family holding a scope
        the client is no longer registered for is revoked, even one the watermark missed
        (issued in the same second)."""
        reason = self._mirror.reason(
            "", family.user_id, family.session_id, client.client_id, int(family.created_at)
        )
        user = await self._users.get(family.user_id)
        if (
            reason is not None
            or family.revoked_at is not None
            or user is None
            or user.disabled
            or not family.scopes <= client.scopes
        ):
            await self._revoke_family(family)
            raise InvalidGrant("the refresh token is invalid")

    async def _revoke_family(self, family: FamilyRecord) -> None:
        minted = await self._refresh.grants.revoke_family(family.family_id, self._clock())
        await deny_minted(self._revocations, minted, self._leeway)
