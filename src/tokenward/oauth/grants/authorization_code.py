"""Authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6, OAuth 2.1 §4.1.3).

The code is used atomically, once; a second use revokes whatever the first one minted (the
family and its access tokens) and is refused (RFC 9700 §4.5). A replay marks the code; the first
exchange uses the code and records what it minted in ONE transaction, on an unused code, with
the family it creates. So a replay that comes first makes the exchange write nothing and revoke
its own (never answered) token, and one that comes after finds everything to revoke. An
exchange whose checks fail (client, redirect_uri, PKCE, expiry) uses the code up all the same.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import structlog

from tokenward.core.ports import CodeStore, GrantStore, RevocationStore, SessionParticipants
from tokenward.core.records import ClientRecord, CodeRecord, MintedToken, SessionParticipant
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.oauth import pkce
from tokenward.oauth.errors import InvalidGrant, InvalidRequest
from tokenward.oauth.revocation import deny_minted
from tokenward.oauth.token_endpoint import TokenRequest, TokenResponse
from tokenward.oauth.user_tokens import UserGrant, UserTokenMinter

log = structlog.get_logger(__name__)
CODE_LIFETIME = 60


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()


class AuthorizationCodeGrant:
    grant_type = "authorization_code"

    def __init__(
        self,
        codes: CodeStore,
        grants: GrantStore,
        minter: UserTokenMinter,
        revocations: RevocationStore,
        mirror: RevocationMirror,
        leeway: float,
        clock: Callable[[], float] = time.time,
        participants: SessionParticipants | None = None,
    ) -> None:
        """`participants`: where a client with a back-channel logout URI is recorded as taking
        part in the session its ID token was issued in (None: back-channel logout is off)."""
        self._participants = participants
        self._codes = codes
        self._grants = grants
        self._minter = minter
        self._revocations = revocations
        self._mirror = mirror
        self._leeway = leeway
        self._clock = clock

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse:
        code = request.params.get("code")
        if code is None:
            raise InvalidRequest("code is required")
        now = self._clock()
        digest = code_digest(code)
        # Read first, decide later: the checks and the minting need the record, and the one
        # write below then both uses the code and records what was minted (one commit, not
        # two). Only that write, or `consume` on the other paths, decides the single use.
        record = await self._codes.peek(digest)
        if record is None:
            raise InvalidGrant("the code is invalid")
        if record.consumed_at is not None:
            await self._use_up(digest, now)  # a replay: marked, what it minted revoked
            raise InvalidGrant("the code was already used")
        try:
            self._check_binding(record, client, request, now)
        except Exception:
            # A failed attempt uses the code up, as when it was consumed before the checks.
            if not await self._use_up(digest, now):
                raise InvalidGrant("the code was already used") from None
            raise
        grant = UserGrant(
            user_id=record.user_id,
            scopes=record.scopes,
            audience=record.audience,
            session_id=record.session_id,
            auth_time=record.auth_time,
            acr=record.acr,
            nonce=record.nonce,
            dpop_jkt=request.dpop_jkt,
            x5t_s256=request.x5t_s256,
        )
        access = await self._minter.access(client, grant)
        minted = MintedToken(access.claims.jti, float(access.claims.exp))
        new = self._minter.new_family(client, grant)
        # One transaction uses the code, records what this exchange minted on it and creates
        # the family: a replay either finds all of it (and revokes it) or has marked the code
        # first, and then this exchange writes nothing and answers nothing.
        used, marked = await self._codes.exchange(
            digest, now, minted, (new.family, new.first) if new is not None else None
        )
        if not used:
            await deny_minted(self._revocations, [minted], self._leeway)  # never handed out
            if marked is not None:
                await self._revoke_what_it_minted(marked, now)
            log.warning("authorization_code_reuse", client_id=client.client_id, race=True)
            raise InvalidGrant("the code was already used")
        response, _access, _family = await self._minter.respond(
            client,
            grant,
            refresh_value=new.value if new is not None else None,
            with_id_token=True,
            access=access,
        )
        await self._record_participant(client, record, now)
        return response

    async def _use_up(self, digest: str, now: float) -> bool:
        """Use the code for an exchange that is refused; True if this was its first use. If
        it was used before, this is a replay: whatever its first exchange minted is revoked."""
        record, first_use = await self._codes.consume(digest, now)
        if record is not None and not first_use:
            await self._revoke_what_it_minted(record, now)
            log.warning("authorization_code_reuse", client_id=record.client_id, race=False)
        return first_use

    async def _record_participant(
        self, client: ClientRecord, record: CodeRecord, now: float
    ) -> None:
        if self._participants is None or not client.backchannel_logout_uri:
            return
        if "openid" not in record.scopes:
            return  # no ID token, no RP session to end
        # Kept as long as any token of this grant may live: the RP may keep its session so long.
        keep = max(client.refresh_token_lifetime, client.access_token_lifetime) + self._leeway
        await self._participants.add(
            SessionParticipant(record.session_id, record.user_id, client.client_id, now + keep)
        )

    def _check_binding(
        self, record: CodeRecord, client: ClientRecord, request: TokenRequest, now: float
    ) -> None:
        if record.client_id != client.client_id:
            raise InvalidGrant("the code was issued to another client")
        if record.expires_at <= now:
            raise InvalidGrant("the code expired")
        redirect_uri = request.params.get("redirect_uri")
        if record.redirect_uri_given and redirect_uri != record.redirect_uri:
            raise InvalidGrant("redirect_uri does not match the authorization request")
        if redirect_uri is not None and redirect_uri != record.redirect_uri:
            raise InvalidGrant("redirect_uri does not match the authorization request")
        pkce.verify(request.params.get("code_verifier"), record.code_challenge)
        if record.dpop_jkt is not None and record.dpop_jkt != request.dpop_jkt:  # RFC 9449 §10
            raise InvalidGrant("the code is bound to another DPoP key (dpop_jkt)")
        issued_at = record.expires_at - CODE_LIFETIME
        if self._mirror.reason(
            "", record.user_id, record.session_id, client.client_id, int(issued_at)
        ):
            raise InvalidGrant("the authorization was revoked")

    async def _revoke_what_it_minted(self, record: CodeRecord, now: float) -> None:
        minted: list[MintedToken] = []
        if record.family_id is not None:
            minted.extend(await self._grants.revoke_family(record.family_id, now))
        if record.access_jti is not None and record.access_exp is not None:
            minted.append(MintedToken(record.access_jti, record.access_exp))
        await deny_minted(self._revocations, minted, self._leeway)
