"""The one validator every protected request goes through (ARCHITECTURE.md, Protected request).

Checklist on a miss: bearer extraction → compact JWS parse → key by `kid` (one bounded refresh
of a remote key set on an unknown kid) → signature with the key's own algorithm → `typ` → exp,
nbf, iat with leeway → iss exact → aud contains ours → revocation. On a cache hit: exp and
revocation again (the latter only when the revocation generation moved), then scopes.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from tokenward.core.claims import AccessToken, access_token_from_claims
from tokenward.core.errors import (
    InsufficientScope,
    InvalidDpopProof,
    InvalidRequest,
    InvalidToken,
    InvalidTokenForNow,
    JoseError,
    TemporarilyUnavailable,
)
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.guard.cache import CacheEntry, RefusalCache, TokenCache
from tokenward.guard.extract import bearer_token, check_b64token, credentials
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.jws import UnknownKeyError, payload_object, verify_compact
from tokenward.tokens.key_sources import KeySource

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §2.1, §4
NO_SCOPES: frozenset[str] = frozenset()
DPOP_NOT_ACCEPTED = "the DPoP scheme is not accepted here"
BEARER, DPOP, ANY = "bearer", "dpop", "any"  # which presentation a token must have (RFC 9449 §7)
CERTIFICATE_MISSING = (
    "the access token is bound to a client certificate the request did not present"
)
CERTIFICATE_MISMATCH = "the access token is bound to another client certificate"


class OpaqueResolver(Protocol):
    """Turns an opaque (reference) token into claims: a local store or RFC 7662 introspection."""

    async def resolve(self, token: str) -> AccessToken | None: ...

    def resolve_sync(self, token: str) -> AccessToken | None: ...


class Validator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Iterable[str],
        keys: KeySource,
        revocations: RevocationMirror,
        opaque: OpaqueResolver | None = None,
        leeway: float = 30.0,
        max_lifetime: float = 86400.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        token_types: Iterable[str] = ACCESS_TOKEN_TYPES,
        any_audience: bool = False,
        dpop: DpopVerifier | None = None,
    ) -> None:
        self.issuer = issuer
        self.audiences = frozenset([audience] if isinstance(audience, str) else audience)
        # Only the issuer's own introspection and revocation endpoints accept every audience.
        self._any_audience = any_audience
        if not self.audiences and not any_audience:
            raise ValueError("a validator needs at least one audience")
        self.keys = keys
        self.revocations = revocations
        self._opaque = opaque
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._token_types = frozenset(kind.lower() for kind in token_types)
        self.cache = TokenCache(cache_size)
        # DPoP-bound tokens live in their own cache: `cached()` never returns one, because a
        # bound token is only good together with a fresh proof (RFC 9449 §7).
        self.dpop = dpop
        self._dpop_cache = TokenCache(cache_size)
        self._inspect_cache = TokenCache(cache_size)  # introspection/revocation, by raw token
        # ... and what they refused for good, by digest: a resource server asks again and again
        # about a token that was revoked or expired, and each miss would read the database.
        self._inspect_refusals = RefusalCache(cache_size)
        # Certificate-bound tokens (RFC 8705 §3) likewise: `cached()` never returns one, since
        # each hit needs the request's certificate thumbprint compared.
        self._mtls_cache = TokenCache(cache_size)

    # --- hot path ------------------------------------------------------------------------
    def cached(self, authorization: str) -> AccessToken | None:
        """The token for a credential seen before, after exp and revocation checks; else None."""
        return self._cached_in(self.cache, authorization)

    def cached_bound(
        self, authorization: str | None, certificate: str | None
    ) -> AccessToken | None:
        """A certificate-bound token seen before, if this request presented its certificate."""
        if certificate is None or authorization is None:
            return None
        token = self._cached_in(self._mtls_cache, authorization)
        if token is not None:
            _check_certificate(token, certificate)
        return token

    def authenticate_sync(
        self,
        authorization: str | None,
        required: frozenset[str] = NO_SCOPES,
        *,
        certificate: str | None = None,
    ) -> AccessToken:
        """Validate an Authorization header value; raises a `BearerError` subclass.
        `certificate`: the x5t#S256 thumbprint of the request's TLS client certificate."""
        token = self.cached(authorization) if authorization is not None else None
        if token is None:
            token = self.cached_bound(authorization, certificate)
        if token is None:
            token = self._miss_sync(authorization, certificate)
        if required and not required <= token.scopes:
            raise InsufficientScope(
                "the access token lacks a required scope", scope=" ".join(sorted(required))
            )
        return token

    async def authenticate(
        self,
        authorization: str | None,
        required: frozenset[str] = NO_SCOPES,
        *,
        certificate: str | None = None,
    ) -> AccessToken:
        """`certificate`: the x5t#S256 thumbprint of the request's TLS client certificate
        (tokenward.serving.tls.peer_certificate), needed for certificate-bound tokens."""
        token = self.cached(authorization) if authorization is not None else None
        if token is None:
            token = self.cached_bound(authorization, certificate)
        if token is None:
            token = await self._miss(authorization, certificate=certificate)
        if required and not required <= token.scopes:
            raise InsufficientScope(
                "the access token lacks a required scope", scope=" ".join(sorted(required))
            )
        return token

    # --- misses --------------------------------------------------------------------------
    async def inspect(self, raw: str) -> AccessToken:
        """Every check but the scheme binding: for our own introspection and revocation
        endpoints, which answer for Bearer and DPoP-bound tokens alike. What it accepts and
        what it refuses for good are remembered apart from the protected requests' caches."""
        # An active token is in the cache, a dead one among the refusals, never both: a
        # refusal kept is final, and the cache drops what it refuses. So the cache is asked
        # first, and an active token's introspection costs no digest.
        refusals = self._inspect_refusals
        try:
            token = self._cached_in(self._inspect_cache, raw)
        except InvalidToken as exc:  # expired or revoked since it was cached: final
            refusals.put(refusals.key(raw), exc.description)
            raise
        if token is not None:
            return token
        digest = refusals.key(raw)
        refused = refusals.get(digest)
        if refused is not None:
            raise InvalidToken(refused)
        generation = self.revocations.generation
        try:
            token = await self._miss("Bearer " + raw, binding=ANY, cache=False)
        except InvalidTokenForNow:
            raise
        except InvalidToken as exc:
            refusals.put(digest, exc.description)
            raise
        self._inspect_cache.put(raw, CacheEntry(token, generation))
        return token

    async def _miss(
        self,
        authorization: str | None,
        *,
        binding: str = BEARER,
        cache: bool = True,
        certificate: str | None = None,
    ) -> AccessToken:
        raw = credentials(authorization)[1] if binding == DPOP else bearer_token(authorization)
        if "." not in raw:
            token = await self._resolve_opaque(raw, self._opaque_async)
        else:
            await self.keys.refresh(unknown_kid=False)  # no-op unless a remote set is past max-age
            try:
                token = self._verify_jwt(raw)
            except UnknownKeyError:
                if not await self.keys.refresh(unknown_kid=True):
                    raise InvalidTokenForNow("no key matches the token's kid") from None
                token = self._verify_jwt_known_keys(raw)
        # A remote mirror starts following on the first token worth checking (not on garbage).
        following = self.revocations.ensure_following()
        if following is not None:
            await following
        return self._admit(
            authorization if cache else None, token, binding=binding, certificate=certificate
        )

    def _miss_sync(self, authorization: str | None, certificate: str | None) -> AccessToken:
        raw = bearer_token(authorization)
        if "." not in raw:
            token = self._resolve_opaque_sync(raw)
        else:
            self.keys.refresh_sync(unknown_kid=False)
            try:
                token = self._verify_jwt(raw)
            except UnknownKeyError:
                if not self.keys.refresh_sync(unknown_kid=True):
                    raise InvalidTokenForNow("no key matches the token's kid") from None
                token = self._verify_jwt_known_keys(raw)
        self.revocations.ensure_following_sync()
        return self._admit(authorization, token, certificate=certificate)

    def _opaque_async(self, raw: str) -> Awaitable[AccessToken | None]:
        if self._opaque is None:  # _resolve_opaque refuses first; this narrows the type
            raise InvalidToken("the access token is malformed")
        return self._opaque.resolve(raw)

    async def _resolve_opaque(
        self, raw: str, resolve: Callable[[str], Awaitable[AccessToken | None]]
    ) -> AccessToken:
        if self._opaque is None:
            raise InvalidToken("the access token is malformed")
        check_b64token(raw)
        token = await resolve(raw)
        if token is None:
            raise InvalidToken("the access token is not active")
        self._check_claims(token)
        return token

    def _resolve_opaque_sync(self, raw: str) -> AccessToken:
        if self._opaque is None:
            raise InvalidToken("the access token is malformed")
        check_b64token(raw)
        token = self._opaque.resolve_sync(raw)
        if token is None:
            raise InvalidToken("the access token is not active")
        self._check_claims(token)
        return token

    def _verify_jwt_known_keys(self, raw: str) -> AccessToken:
        try:
            return self._verify_jwt(raw)
        except UnknownKeyError:
            raise InvalidTokenForNow("no key matches the token's kid") from None

    def _verify_jwt(self, raw: str) -> AccessToken:
        try:
            jws, _key = verify_compact(raw, self.keys.get)
            typ = jws.header.get("typ")
            if not isinstance(typ, str) or typ.lower() not in self._token_types:
                raise InvalidToken("the token is not an access token (typ)")  # RFC 9068 §4
            token = access_token_from_claims(payload_object(jws))
        except UnknownKeyError:
            raise
        except JoseError as exc:
            raise InvalidToken(str(exc)) from None
        self._check_claims(token)
        return token

    def _check_claims(self, token: AccessToken) -> None:
        now = self._clock()
        leeway = self._leeway
        if now >= token.exp + leeway:
            raise InvalidToken("the access token expired")
        if token.nbf is not None and token.nbf > now + leeway:
            raise InvalidTokenForNow("the access token is not valid yet")
        if token.iat > now + leeway:
            raise InvalidTokenForNow("the access token was issued in the future")
        if token.exp - token.iat > self._max_lifetime:
            raise InvalidToken("the access token's lifetime is longer than allowed")
        if token.iss != self.issuer:
            raise InvalidToken("the access token has the wrong issuer")
        if self.audiences.isdisjoint(token.aud) and not self._any_audience:
            raise InvalidToken("the access token is not for this audience")

    def _admit(
        self,
        authorization: str | None,
        token: AccessToken,
        *,
        binding: str = BEARER,
        certificate: str | None = None,
    ) -> AccessToken:
        # RFC 9449 §7.2: a bound token is refused as Bearer; DPoP needs a bound token. Checked
        # before caching, so a Bearer cache hit is unbound by construction (no cost per hit).
        cache = self._dpop_cache if binding == DPOP else self.cache
        if token.cnf is not None:
            if token.jkt is not None and binding == BEARER:
                raise InvalidToken("a DPoP-bound token must be sent with the DPoP scheme")
            if token.x5t_s256 is not None and binding != ANY:
                # RFC 8705 §3: only with the certificate it is bound to, whatever the scheme.
                _check_certificate(token, certificate)
                if binding == BEARER:
                    cache = self._mtls_cache
        if binding == DPOP and token.jkt is None:
            raise InvalidToken("the token is not DPoP-bound")
        mirror = self.revocations
        if self._clock() > mirror.fresh_until:
            raise TemporarilyUnavailable("revocation state is stale; try again shortly")
        generation = mirror.generation
        reason = mirror.reason(token.jti, token.sub, token.sid, token.client_id, token.iat)
        if reason is not None:
            raise InvalidToken(reason)
        if authorization is not None:
            cache.put(authorization, CacheEntry(token, generation))
        return token

    # --- DPoP (RFC 9449 §7) --------------------------------------------------------------
    async def authenticate_request(
        self,
        authorization: str | None,
        required: frozenset[str] = NO_SCOPES,
        *,
        dpop_proof: str | None = None,
        method: str = "GET",
        url: str = "",
        certificate: str | None = None,
    ) -> AccessToken:
        """Bearer or DPoP. A DPoP token needs a fresh proof for this method and URL, every time.
        `certificate`: the request's client certificate thumbprint, for certificate-bound
        tokens (one token has one binding; both kinds may come to the same API)."""
        if authorization is None or authorization[:5].lower() != "dpop ":
            return await self.authenticate(authorization, required, certificate=certificate)
        if self.dpop is None:
            raise InvalidRequest(DPOP_NOT_ACCEPTED)
        token = self._cached_in(self._dpop_cache, authorization)
        if token is None:
            token = await self._miss(authorization, binding=DPOP, certificate=certificate)
        elif token.x5t_s256 is not None:
            _check_certificate(token, certificate)
        try:
            proof = await self.dpop.verify(
                dpop_proof, method=method, url=url, access_token=authorization[5:]
            )
        except JoseError as exc:
            raise self.dpop.refusal(exc) from None
        if proof.jkt != token.jkt:
            raise InvalidDpopProof("the proof is not signed by the key the token is bound to")
        if required and not required <= token.scopes:
            raise InsufficientScope(
                "the access token lacks a required scope", scope=" ".join(sorted(required))
            )
        return token

    def _cached_in(self, cache: TokenCache, authorization: str) -> AccessToken | None:
        """One hit path for every cache (Bearer, DPoP-bound, introspection): exp, staleness of
        the revocation mirror, and revocation (re-run only when the generation moved)."""
        entry = cache.get(authorization)
        if entry is None:
            return None
        token = entry.token
        now = self._clock()
        if now >= token.exp + self._leeway:
            cache.discard(authorization)
            raise InvalidToken("the access token expired")
        mirror = self.revocations
        if now > mirror.fresh_until:
            raise TemporarilyUnavailable("revocation state is stale; try again shortly")
        generation = mirror.generation
        if entry.generation != generation:
            reason = mirror.reason(token.jti, token.sub, token.sid, token.client_id, token.iat)
            if reason is not None:
                cache.discard(authorization)
                raise InvalidToken(reason)
            entry.generation = generation
        return token


def _check_certificate(token: AccessToken, certificate: str | None) -> None:
    """RFC 8705 §3: the token's cnf.x5t#S256 must be the presented certificate's thumbprint."""
    bound = token.x5t_s256
    if bound is None:
        return
    if certificate is None:
        raise InvalidToken(CERTIFICATE_MISSING)
    if not hmac.compare_digest(bound.encode(), certificate.encode()):
        raise InvalidToken(CERTIFICATE_MISMATCH)
