"""The tokens a token exchange (RFC 8693 §2.1) accepts as subject_token or actor_token, each
verified by its own rules into one `PresentedToken`:

- our access token (`...:access_token`): the issuer's own validator, any audience, revocation
  included;
- our ID token (`...:id_token`): our keys, `typ` JWT, issued to the requesting client, not
  expired, its session and subject not revoked;
- a JWT of a configured trusted issuer (`...:jwt`): that issuer's JWKS (fetched and cached by
  `tokens.remote_jwks`), the algorithm pinned per issuer, `aud` naming us, not expired.

Every refusal is `invalid_request` (§2.2.2: a subject or actor token invalid for any reason) with
a fixed phrase; a revocation view too stale to trust is `temporarily_unavailable` (fail closed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokenward.core.claims import MAX_NUMERIC_DATE, MAX_SCOPE_LENGTH, AccessToken
from tokenward.core.errors import BearerError, JoseError
from tokenward.core.errors import TemporarilyUnavailable as StaleRevocations
from tokenward.core.ports import TokenVerifier
from tokenward.core.records import ClientRecord
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.oauth.errors import InvalidRequest, TemporarilyUnavailable
from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.jws import (
    MAX_COMPACT_LENGTH,
    KeyLookup,
    UnknownKeyError,
    parse_compact,
    payload_object,
    verify_compact,
)

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPES = (ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TYPE)
MAX_TOKEN_LENGTH = MAX_COMPACT_LENGTH  # nothing longer verifies anyway
MAX_ACT_DEPTH = 8  # actors in one delegation chain (RFC 8693 §4.1 nests them)
MAX_FOREIGN_LIFETIME = 86400  # a trusted issuer's JWT living longer than this is refused
_ACCESS_TOKEN_CLAIMS = ("client_id", "scope")  # RFC 9068 claims that an ID token never has


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """What a verified subject or actor token says, whatever its kind."""

    token_type: str
    issuer: str
    subject: str
    expires_at: int
    scopes: frozenset[str]  # what it grants; an ID token grants none (it says who, not what)
    session_id: str | None = None  # ours only: a foreign sid means nothing here
    jti: str | None = None  # our access tokens: how to find the grant they descend from
    client_id: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    act: Mapping[str, Any] | None = None  # the delegation chain so far (RFC 8693 §4.1)
    may_act: Mapping[str, Any] | None = None  # who may act for the subject (§4.4)
    jkt: str | None = None  # a DPoP-bound access token's key (RFC 9449)
    x5t_s256: str | None = None  # a certificate-bound access token's certificate (RFC 8705)


class IssuerKeys(Protocol):
    """A trusted issuer's keys: `tokens.remote_jwks.RemoteJwks` satisfies it."""

    def get(self, kid: str | None) -> VerificationKey | None: ...

    async def refresh(self, *, unknown_kid: bool) -> bool: ...


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    issuer: str
    keys: IssuerKeys
    algorithm: str  # pinned: a key of this issuer for any other algorithm is refused


def _refused(role: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"the {role} is invalid: {why}")


class ExchangeTokenReader:
    def __init__(
        self,
        *,
        issuer: str,
        audiences: frozenset[str],
        access_tokens: TokenVerifier,
        our_keys: KeyLookup,
        mirror: RevocationMirror,
        trusted: Sequence[TrustedIssuer] = (),
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`audiences`: what a trusted issuer's JWT must name in `aud` (our issuer, our token
        endpoint). `access_tokens`: the any-audience validator, as introspection uses it."""
        self._issuer = issuer
        self._audiences = audiences
        self._access_tokens = access_tokens
        self._our_keys = our_keys
        self._mirror = mirror
        self._trusted = {entry.issuer: entry for entry in trusted if entry.issuer != issuer}
        self._leeway = leeway
        self._clock = clock

    async def read(
        self, raw: str, token_type: str, client: ClientRecord, role: str
    ) -> PresentedToken:
        if len(raw) > MAX_TOKEN_LENGTH or not raw.isascii():
            raise _refused(role, "too long or not ASCII")
        if token_type == ACCESS_TOKEN_TYPE:
            return self._from_access(await self._inspect(raw, role))
        if token_type == ID_TOKEN_TYPE:
            return self._from_id_token(raw, client, role)
        if token_type == JWT_TYPE:
            return await self._from_trusted(raw, role)
        raise InvalidRequest(f"the {role}_type is not supported")

    # --- our access tokens -----------------------------------------------------------------
    async def _inspect(self, raw: str, role: str) -> AccessToken:
        try:
            return await self._access_tokens.inspect(raw)
        except StaleRevocations:
            raise TemporarilyUnavailable("revocation state is stale; try again shortly") from None
        except BearerError:
            raise _refused(role, "not an active access token of this server") from None

    def _from_access(self, token: AccessToken) -> PresentedToken:
        extra = token.extra
        return PresentedToken(
            token_type=ACCESS_TOKEN_TYPE,
            issuer=token.iss,
            subject=token.sub,
            expires_at=token.exp,
            scopes=token.scopes,
            session_id=token.sid,
            jti=token.jti,
            client_id=token.client_id,
            auth_time=token.auth_time,
            acr=token.acr,
            act=_actor_claim(extra.get("act"), "access token"),
            may_act=_actor_claim(extra.get("may_act"), "access token"),
            jkt=token.jkt,
            x5t_s256=token.x5t_s256,
        )

    # --- our ID tokens ---------------------------------------------------------------------
    def _from_id_token(self, raw: str, client: ClientRecord, role: str) -> PresentedToken:
        try:
            jws, _key = verify_compact(raw, self._our_keys)
            claims = payload_object(jws)
        except JoseError:
            raise _refused(role, "not an ID token of this server") from None
        if (
            jws.header.get("typ") != "JWT"
            or claims.get("iss") != self._issuer
            or any(name in claims for name in _ACCESS_TOKEN_CLAIMS)
        ):
            raise _refused(role, "not an ID token of this server")
        if claims.get("aud") != client.client_id:  # OIDC Core §3.1.3.7: only for its audience
            raise _refused(role, "the ID token was issued to another client")
        subject = _string(claims, "sub", role, required=True) or ""
        expires_at = self._live_until(claims, role)
        issued_at = _date(claims, "iat", role, required=True) or 0
        session_id = _string(claims, "sid", role, required=False)
        self._check_fresh()
        if self._mirror.reason("", subject, session_id, client.client_id, issued_at):
            raise _refused(role, "revoked")
        return PresentedToken(
            token_type=ID_TOKEN_TYPE,
            issuer=self._issuer,
            subject=subject,
            expires_at=expires_at,
            scopes=frozenset(),
            session_id=session_id,
            client_id=client.client_id,
            auth_time=_date(claims, "auth_time", role, required=False),
            acr=_string(claims, "acr", role, required=False),
        )

    # --- trusted issuers' JWTs -------------------------------------------------------------
    async def _from_trusted(self, raw: str, role: str) -> PresentedToken:
        try:
            unverified = payload_object(parse_compact(raw))  # only to choose the issuer's keys
        except JoseError:
            raise _refused(role, "not a signed JWT") from None
        trusted = self._trusted.get(str(unverified.get("iss")))
        if trusted is None:
            raise _refused(role, "its issuer is not trusted here")
        claims = await self._verified(raw, trusted, role)
        if claims.get("iss") != trusted.issuer:
            raise _refused(role, "its issuer is not trusted here")
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or self._audiences.isdisjoint(
            item for item in named if isinstance(item, str)
        ):
            raise _refused(role, "it is not addressed to this server (aud)")
        expires_at = self._live_until(claims, role)
        issued_at = _date(claims, "iat", role, required=False)
        if issued_at is not None and expires_at - issued_at > MAX_FOREIGN_LIFETIME:
            raise _refused(role, "its lifetime is longer than allowed")
        not_before = _date(claims, "nbf", role, required=False)
        if not_before is not None and not_before > self._clock() + self._leeway:
            raise _refused(role, "not valid yet")
        return PresentedToken(
            token_type=JWT_TYPE,
            issuer=trusted.issuer,
            subject=_string(claims, "sub", role, required=True) or "",
            expires_at=expires_at,
            scopes=_scopes(claims.get("scope"), role),
            client_id=_string(claims, "client_id", role, required=False),
            act=_actor_claim(claims.get("act"), role),
            may_act=_actor_claim(claims.get("may_act"), role),
        )

    async def _verified(self, raw: str, trusted: TrustedIssuer, role: str) -> dict[str, Any]:
        await trusted.keys.refresh(unknown_kid=False)  # no-op unless past its max-age
        for attempt in (1, 2):
            try:
                jws, key = verify_compact(raw, trusted.keys.get)
            except UnknownKeyError:
                if attempt == 2 or not await trusted.keys.refresh(unknown_kid=True):
                    raise _refused(role, "no key of its issuer matches") from None
                continue
            except JoseError:
                raise _refused(role, "its signature does not verify") from None
            if key.alg.name != trusted.algorithm:
                raise _refused(role, "signed with an algorithm not pinned for its issuer")
            try:
                return payload_object(jws)
            except JoseError:
                raise _refused(role, "its claims are not a JSON object") from None
        raise _refused(role, "no key of its issuer matches")  # unreachable: the loop returns

    # --- shared checks ---------------------------------------------------------------------
    def _live_until(self, claims: Mapping[str, Any], role: str) -> int:
        expires_at = _date(claims, "exp", role, required=True) or 0
        if expires_at <= self._clock():  # no leeway: the result may not outlive it
            raise _refused(role, "expired")
        return expires_at

    def _check_fresh(self) -> None:
        if self._clock() > self._mirror.fresh_until:
            raise TemporarilyUnavailable("revocation state is stale; try again shortly")


def _string(claims: Mapping[str, Any], name: str, role: str, *, required: bool) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if type(value) is not str or not value or len(value) > 1024:
        raise _refused(role, f"the {name} claim is missing or malformed")
    return value


def _date(claims: Mapping[str, Any], name: str, role: str, *, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if type(value) is not int or not 0 <= value <= MAX_NUMERIC_DATE:
        raise _refused(role, f"the {name} claim is not a valid NumericDate")
    return value


def _scopes(value: Any, role: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if type(value) is not str or len(value) > MAX_SCOPE_LENGTH:
        raise _refused(role, "the scope claim is malformed")
    return frozenset(value.split())


def _actor_claim(value: Any, role: str) -> Mapping[str, Any] | None:
    """An `act` or `may_act` claim (RFC 8693 §4.1, §4.4): an object naming `sub`, nested `act`
    at most MAX_ACT_DEPTH deep. None when absent."""
    if value is None:
        return None
    depth, current = 0, value
    while current is not None:
        depth += 1
        if type(current) is not dict or depth > MAX_ACT_DEPTH:
            raise _refused(role, "its act or may_act claim is malformed or too deep")
        sub = current.get("sub")
        if type(sub) is not str or not sub:
            raise _refused(role, "its act or may_act claim names no sub")
        current = current.get("act")
    return dict(value)
