"""Signed request objects (JAR, RFC 9101): an authorization request as a JWT the client signed.

Verified strictly: compact JWS only (an encrypted object, five segments, is refused), `typ`
oauth-authz-req+jwt (§10.8, so no other JWT of the client's is taken for one), a key of the
client's registered `jwks` / `jwks_uri` only (never one the object names itself), the algorithm
pinned to that key, `alg: none` never (tokens.jws). `iss` is the client, `aud` is us, `exp` is
required and near, `nbf` (when present) recent, `jti` single use. The parameters of the request
are the object's claims, and only those (§5): what came beside it is ignored by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from tokenward.core.errors import JoseError
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_auth import ReplayCache, within_skew
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import InvalidRequestObject
from tokenward.oauth.profiles import Profiles
from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.jws import loads_object, parse_compact, payload_bytes, verify_compact

TYPES = frozenset({"oauth-authz-req+jwt", "application/oauth-authz-req+jwt"})
MAX_LIFETIME = 3600.0  # exp at most this far ahead (FAPI 2.0 Message Signing: 60 min)
MAX_NBF_AGE = 3600.0  # and nbf at most this far back
# JWT claims about the object itself, not parameters of the request (RFC 9101 §4).
JWT_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "sub"})
# A request object must not nest another (RFC 9101 §4).
NESTED = frozenset({"request", "request_uri"})


class RequestObjects:
    def __init__(
        self,
        keys: ClientKeys,
        replay: ReplayCache,
        issuer: str,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        profiles: Profiles | None = None,
    ) -> None:
        self._profiles = profiles or Profiles()
        self._keys = keys
        self._replay = replay
        self._issuer = issuer
        self._leeway = leeway
        self._clock = clock

    async def verify(self, client: ClientRecord, request: str) -> list[tuple[str, str]]:
        """The request's parameters, as (name, value) pairs, from a request object `client`
        signed; `InvalidRequestObject` saying why not otherwise."""
        claims, alg = await self._verified_claims(client, request)
        now = self._clock()
        self._check_profile(client, alg, claims, now)
        if claims.get("iss") != client.client_id:
            raise InvalidRequestObject("the request object's iss must be the client_id")
        if claims.get("client_id", client.client_id) != client.client_id:
            raise InvalidRequestObject("the request object's client_id is another client")
        aud = claims.get("aud")
        if not (aud == self._issuer or (isinstance(aud, list) and self._issuer in aud)):
            raise InvalidRequestObject("the request object is not for this server (aud)")
        exp, nbf, jti = claims.get("exp"), claims.get("nbf"), claims.get("jti")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidRequestObject("the request object needs an exp")
        if not now - self._leeway < exp <= now + MAX_LIFETIME:
            raise InvalidRequestObject("the request object is expired or lives too long (exp)")
        if nbf is not None and (
            not isinstance(nbf, int | float)
            or isinstance(nbf, bool)
            or not now - MAX_NBF_AGE <= nbf <= now + self._leeway
        ):
            raise InvalidRequestObject("the request object is not valid yet or too old (nbf)")
        if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
            raise InvalidRequestObject("the request object needs a jti")
        if NESTED & claims.keys():
            raise InvalidRequestObject("a request object cannot hold request or request_uri")
        if not await self._replay.first_use(f"jar:{client.client_id}:{jti}", exp + self._leeway):
            raise InvalidRequestObject("the request object was already used (jti)")
        return [("client_id", client.client_id), *_parameters(claims)]

    def _check_profile(
        self, client: ClientRecord, alg: str, claims: dict[str, Any], now: float
    ) -> None:
        profile = self._profiles.for_client(client)
        refusal = profile.alg_refusal(alg, "request objects")
        if refusal is not None:
            raise InvalidRequestObject(refusal)
        if profile.future_skew is not None and not within_skew(claims, now, profile.future_skew):
            raise InvalidRequestObject("the request object's iat or nbf is in the future")

    async def _verified_claims(
        self, client: ClientRecord, request: str
    ) -> tuple[dict[str, Any], str]:
        if client.jwks is None and client.jwks_uri is None:
            raise InvalidRequestObject("the client has no registered keys (jwks or jwks_uri)")
        try:
            header = parse_compact(request).header
            if header.get("typ") not in TYPES:
                raise InvalidRequestObject("the request object's typ must be oauth-authz-req+jwt")
            kid = header.get("kid")
            lookup = await self._keys.lookup(client, kid if isinstance(kid, str) else None)
            jws, key = verify_compact(request, lambda kid: _asymmetric(lookup(kid)))
            return loads_object(payload_bytes(jws)), key.alg.name
        except (JoseError, orjson.JSONDecodeError):
            # One answer for every signature failure: which check failed helps only an attacker.
            raise InvalidRequestObject("the request object does not verify") from None


def _asymmetric(key: VerificationKey | None) -> VerificationKey | None:
    """A client's published JWKS is public: a symmetric key in it is a secret anyone can read,
    so nothing it "signed" proves the client."""
    return None if key is None or key.alg.symmetric else key


def _parameters(claims: dict[str, Any]) -> list[tuple[str, str]]:
    """Claims as request parameters: strings as they are, integers (max_age) in decimal,
    `resource` as an array of URIs too (RFC 8707); any other JSON value as its JSON text, so
    the authorization endpoint's size limits still see it."""
    pairs: list[tuple[str, str]] = []
    for name, value in claims.items():
        if name in JWT_CLAIMS or name == "client_id":
            continue
        if isinstance(value, str):
            pairs.append((name, value))
        elif type(value) is int:
            pairs.append((name, str(value)))
        elif name == "resource" and isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise InvalidRequestObject("resource must be a URI or an array of URIs")
            pairs.extend(("resource", item) for item in value)
        else:
            pairs.append((name, orjson.dumps(value).decode()))
    return pairs
