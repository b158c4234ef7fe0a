"""OpenID Back-Channel Logout 1.0: when a session ends, each client that received an ID token
in it (and registered a `backchannel_logout_uri`) gets a logout token, POSTed as the form field
`logout_token` (§2.5).

The logout token (§2.4) is a JWT with `typ` logout+jwt, signed like the client's ID tokens (its
`id_token_alg`), carrying iss, aud (the client), iat, exp, jti, `sub` and `sid`, and the event
`http://schemas.openid.net/event/backchannel-logout`; never a `nonce`, so it cannot pass for an
ID token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import structlog

from tokenward.core.ports import ClientStore, SessionParticipants
from tokenward.core.records import ClientRecord, SessionParticipant
from tokenward.oauth.ssf.delivery import Deliveries
from tokenward.oauth.ssf.signing import TokenSigner
from tokenward.tokens.errors import NoSigningKey

log = structlog.get_logger(__name__)

BACKCHANNEL_LOGOUT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"
LOGOUT_TOKEN_LIFETIME = 120  # seconds: long enough for retries of a slow RP, no longer


class BackChannelLogout:
    def __init__(
        self,
        issuer: str,
        clients: ClientStore,
        participants: SessionParticipants,
        signer: TokenSigner,
        deliveries: Deliveries,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._clients = clients
        self._participants = participants
        self._signer = signer
        self._deliveries = deliveries
        self._clock = clock

    async def session_ended(self, session_id: str) -> int:
        """Notify the clients of one session; how many logout tokens were queued."""
        return await self._notify(await self._participants.of_session(session_id, self._clock()))

    async def user_logged_out(self, user_id: str) -> int:
        """Every session of the user ended (sign-out everywhere, password change, disable)."""
        return await self._notify(await self._participants.of_user(user_id, self._clock()))

    async def _notify(self, participants: Sequence[SessionParticipant]) -> int:
        sent = 0
        for participant in participants:
            client = await self._clients.get(participant.client_id)
            if client is None or not client.active or not client.backchannel_logout_uri:
                continue
            token = self._signed_or_none(client, participant)
            if token is None:
                continue
            self._deliveries.submit(
                client.backchannel_logout_uri,
                urlencode({"logout_token": token}).encode(),
                {"content-type": "application/x-www-form-urlencoded"},
                f"backchannel-logout:{client.client_id}",
            )
            sent += 1
        return sent

    def _signed_or_none(self, client: ClientRecord, participant: SessionParticipant) -> str | None:
        """The logout token, or None (logged for the operator) when the client's ID-token
        algorithm has no key here: the RP would refuse any other algorithm (§2.6)."""
        missing: str | None = None
        try:
            return self.logout_token(client, participant.user_id, participant.session_id)
        except NoSigningKey as exc:
            missing = exc.alg
        log.error("no_signing_key", client_id=client.client_id, alg=missing)
        return None

    def logout_token(self, client: ClientRecord, user_id: str, session_id: str | None) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_LIFETIME,
            "jti": secrets.token_urlsafe(16),
            "sub": user_id,
            "events": {BACKCHANNEL_LOGOUT: {}},
        }
        if session_id is not None:
            claims["sid"] = session_id
        return self._signer.sign(claims, LOGOUT_TOKEN_TYPE, client.id_token_alg)
