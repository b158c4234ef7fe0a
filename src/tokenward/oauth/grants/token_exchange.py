"""Token exchange (RFC 8693): a confidential client trades a subject token (and optionally an
actor token) for a new access token that is never wider than what it came from.

- Down-scoping only: scope ⊆ the subject token's scopes ∩ the client's; audience ⊆ the client's
  exchange policy (`ClientRecord.exchange_audiences`), or `invalid_scope` / `invalid_target`.
- Impersonation (no actor token, and the client may impersonate) keeps the subject token's
  delegation chain as it is; delegation adds an `act` claim naming the actor (the actor token's
  `sub`, or the client itself when it may not impersonate), with the subject token's `act`
  nested inside it (§4.1), so a chain A → B → C reads from the outside in.
- `may_act` in the subject token (§4.4) must name that actor.
- The result lives no longer than the subject token (nor the actor token), carries its `sid`
  (a logout's session watermark covers it), and is linked to the grant family the subject token
  descends from (`TokenLineage`), so revoking that grant denies it too. No refresh token.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog

from tokenward.core.ports import RevocationStore, TokenLineage
from tokenward.core.records import ClientRecord, MintedToken
from tokenward.oauth.errors import InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient
from tokenward.oauth.exchange_tokens import (
    ACCESS_TOKEN_TYPE,
    MAX_ACT_DEPTH,
    ExchangeTokenReader,
    PresentedToken,
)
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.mtls import confirmation
from tokenward.oauth.revocation import deny_minted
from tokenward.oauth.scopes import parse_scope
from tokenward.oauth.token_endpoint import TokenRequest, TokenResponse, token_response
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant

log = structlog.get_logger(__name__)
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ISSUED_TOKEN_TYPES = (ACCESS_TOKEN_TYPE,)  # what requested_token_type may ask for


class TokenExchangeGrant:
    grant_type = GRANT_TYPE

    def __init__(
        self,
        reader: ExchangeTokenReader,
        issuer: AccessTokenIssuer,
        lineage: TokenLineage,
        revocations: RevocationStore,
        *,
        issuer_id: str,
        leeway: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._issuer = issuer
        self._lineage = lineage
        self._revocations = revocations
        self._issuer_id = issuer_id  # our `iss`: an actor of ours is named without one
        self._leeway = leeway
        self._clock = clock

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse:
        if client.auth_method == "none":  # a public client proves nothing about who exchanges
            raise UnauthorizedClient("public clients cannot exchange tokens")
        params = request.params
        subject_raw, subject_type = params.get("subject_token"), params.get("subject_token_type")
        if subject_raw is None or subject_type is None:
            raise InvalidRequest("subject_token and subject_token_type are required")
        actor_raw, actor_type = params.get("actor_token"), params.get("actor_token_type")
        if (actor_raw is None) != (actor_type is None):  # §2.1: one goes with the other
            raise InvalidRequest("actor_token_type must be given exactly when actor_token is")
        requested = params.get("requested_token_type")
        if requested is not None and requested not in ISSUED_TOKEN_TYPES:
            raise InvalidRequest("only access tokens are issued (requested_token_type)")
        wanted = parse_scope(params.get("scope"))
        audience = self._audience(request, client)
        subject = await self._reader.read(subject_raw, subject_type, client, "subject_token")
        actor = None
        if actor_raw is not None and actor_type is not None:
            actor = await self._reader.read(actor_raw, actor_type, client, "actor_token")
        for presented, role in ((subject, "subject_token"), (actor, "actor_token")):
            if presented is not None and presented.jkt not in (None, request.dpop_jkt):
                raise InvalidRequest(f"the {role} is DPoP-bound: send a proof of its key")
            if presented is not None and presented.x5t_s256 is not None:
                # RFC 8705 §3: only with its certificate, as at any resource server.
                presenting = request.certificate.x5t_s256 if request.certificate else None
                if not hmac.compare_digest(presented.x5t_s256, presenting or ""):
                    raise InvalidRequest(f"the {role} is bound to a client certificate: present it")
        act = self._act(subject, actor, client)
        issued = await self._issuer.issue(
            client,
            TokenGrant(
                subject=subject.subject,
                client_id=client.client_id,
                audience=audience,
                scopes=self._scopes(wanted, subject, client),
                session_id=subject.session_id,
                auth_time=subject.auth_time,
                acr=subject.acr,
                cnf=confirmation(request.dpop_jkt, request.x5t_s256),
                extra={"act": act} if act is not None else {},
                lifetime=self._lifetime(client, subject, actor),
            ),
        )
        await self._link(subject, issued)
        log.info(
            "token_exchanged",
            client_id=client.client_id,
            subject_token_type=subject.token_type,
            delegation=act is not None,
            depth=_depth(act),
        )
        return token_response(issued, issued_token_type=ACCESS_TOKEN_TYPE)  # §2.2.1

    def _audience(self, request: TokenRequest, client: ClientRecord) -> tuple[str, ...]:
        """Resource (RFC 8707, absolute URIs) and audience (logical names) together name the
        targets; each must be in the client's exchange policy. None named: the whole policy."""
        allowed = client.exchange_audiences
        if not allowed:
            raise InvalidTarget("this client may not exchange tokens for any audience")
        for resource in request.resources:
            parts = urlsplit(resource)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise InvalidTarget("resource must be an absolute URI without a fragment")
        named = [*request.resources]
        if "audience" in request.params:
            named.append(request.params["audience"])
        if not named:
            return allowed
        if any(target not in allowed for target in named):
            raise InvalidTarget("the client may not exchange tokens for this audience")
        return tuple(dict.fromkeys(named))

    @staticmethod
    def _scopes(
        wanted: frozenset[str] | None, subject: PresentedToken, client: ClientRecord
    ) -> frozenset[str]:
        most = subject.scopes & client.scopes
        if wanted is None:
            return most
        if not wanted <= most:
            raise InvalidScope("an exchange may narrow the subject token's scope, never widen it")
        return wanted

    def _act(
        self, subject: PresentedToken, actor: PresentedToken | None, client: ClientRecord
    ) -> dict[str, Any] | None:
        """The result's `act` claim; None for an impersonation of a subject acting as itself."""
        if actor is None and client.exchange_impersonation:
            self._check_may_act(subject, {"sub": client.client_id})
            return dict(subject.act) if subject.act is not None else None
        identity: dict[str, Any]
        if actor is None:
            identity = {"sub": client.client_id}  # a delegate-only client acts itself
        else:
            identity = {"sub": actor.subject}
            if actor.issuer != self._issuer_id:
                identity["iss"] = actor.issuer
        self._check_may_act(subject, identity)
        if subject.act is not None:
            identity["act"] = dict(subject.act)  # §4.1: prior actors nest inside the current
        if _depth(identity) > MAX_ACT_DEPTH:
            raise InvalidRequest("the delegation chain is too long")
        return identity

    def _check_may_act(self, subject: PresentedToken, actor: Mapping[str, Any]) -> None:
        """§4.4: when the subject token says who may act for it, the actor must be that party."""
        may_act = subject.may_act
        if may_act is None:
            return
        if may_act.get("sub") != actor.get("sub") or may_act.get("iss", self._issuer_id) != (
            actor.get("iss", self._issuer_id)
        ):
            raise InvalidRequest("the subject_token does not allow this actor (may_act)")

    def _lifetime(
        self, client: ClientRecord, subject: PresentedToken, actor: PresentedToken | None
    ) -> int:
        """Never past the subject token's (or the actor token's) expiry. One second of margin:
        the strategy reads the clock again, and may land in the next second."""
        now = int(self._clock())
        ends = min(subject.expires_at, actor.expires_at if actor else subject.expires_at)
        lifetime = min(client.access_token_lifetime, ends - now - 1)
        if lifetime < 1:
            raise InvalidRequest("the subject_token expires too soon to be exchanged")
        return lifetime

    async def _link(self, subject: PresentedToken, issued: IssuedAccessToken) -> None:
        """Tie the new token to the grant family its subject token descends from."""
        if subject.jti is None:
            return  # an ID token (its sid suffices) or a trusted issuer's JWT: no grant here
        family = await self._lineage.family_of(subject.jti)
        if family is None:
            return  # a client_credentials token: nothing to die with but itself
        minted = MintedToken(issued.claims.jti, float(issued.claims.exp))
        if not await self._lineage.link(family, minted):
            await deny_minted(self._revocations, [minted], self._leeway)  # never handed out
            raise InvalidRequest("the subject_token's grant was revoked")


def _depth(act: Mapping[str, Any] | None) -> int:
    depth = 0
    while isinstance(act, Mapping):
        depth += 1
        act = act.get("act")
    return depth
