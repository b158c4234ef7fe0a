"""Client authentication at the token, introspection and revocation endpoints.

client_secret_basic (RFC 6749 §2.3.1, id and secret url-decoded), client_secret_post,
private_key_jwt (RFC 7523 §2.2, OIDC Core §9: jti single use), tls_client_auth and
self_signed_tls_client_auth (RFC 8705 §2, the TLS client certificate; oauth.mtls) and none
(public clients, which must then use PKCE). One method per request (RFC 6749 §2.3), and it must
be the registered one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

import orjson
import structlog

from tokenward.core.client_certs import ClientCertificate
from tokenward.core.errors import JoseError
from tokenward.core.ports import ClientStore
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import InvalidClient, InvalidRequest
from tokenward.oauth.mtls import MTLS_METHODS, MtlsAuthenticator
from tokenward.oauth.profiles import Profile, Profiles
from tokenward.tokens.jws import loads_object, parse_compact, payload_bytes, verify_compact

log = structlog.get_logger(__name__)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 3600.0  # common client default (Authlib, Nimbus); jti kept until exp
METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", *MTLS_METHODS, "none")


class ReplayCache(Protocol):
    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before it expires; False for every replay."""
        ...

    async def hold(self, key: str, expires_at: float) -> None:
        """Make `key`'s marker last until `expires_at`, whatever was there: a claim taken with
        `first_use` is extended once its work is done, or released (`expires_at` not after now)
        when the work failed, so a retry may claim it again."""
        ...


class SecretHasher:
    """Client secrets are 256-bit random values: a keyed HMAC is as safe as a slow hash here
    and costs microseconds instead of the ~50 ms an argon2 check would add to every token call."""

    def __init__(self, key: bytes) -> None:
        # Keyed once: each digest copies this state instead of setting the key up again (half
        # the cost of an HMAC this short). Copying only reads it, so it is shared safely.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, secret: str) -> str:
        mac = self._keyed.copy()
        mac.update(secret.encode("utf-8"))
        return mac.hexdigest()

    def matches(self, secret: str, digest: str | None) -> bool:
        if digest is None:
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a corrupted stored
        # digest, or a typed secret) with a TypeError, which would be a 500, not a refusal.
        return hmac.compare_digest(
            self.digest(secret).encode(), digest.encode("utf-8", "surrogatepass")
        )

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the request presented, before any lookup."""

    method: str
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def presented_credentials(
    params: Mapping[str, str], authorization: str | None
) -> ClientCredentials:
    basic = _basic_credentials(authorization)
    in_body = "client_secret" in params or "client_assertion" in params
    if basic is not None and in_body:
        raise InvalidRequest("use exactly one client authentication method")
    if basic is not None:
        if "client_id" in params and params["client_id"] != basic[0]:
            raise InvalidRequest("client_id differs from the authenticated client")
        return ClientCredentials("client_secret_basic", basic[0], secret=basic[1])
    if "client_assertion" in params:
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidRequest("unsupported client_assertion_type")
        return ClientCredentials(
            "private_key_jwt", _assertion_subject(params), assertion=params["client_assertion"]
        )
    client_id = params.get("client_id")
    if client_id is None:
        raise InvalidClient("client authentication is required")
    if "client_secret" in params:
        return ClientCredentials("client_secret_post", client_id, secret=params["client_secret"])
    return ClientCredentials("none", client_id)


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if authorization is None or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials", headers=_BASIC_CHALLENGE) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClient("malformed Basic credentials", headers=_BASIC_CHALLENGE)
    return unquote(client_id), unquote(secret)  # RFC 6749 §2.3.1: form-urlencoded first


def _assertion_subject(params: Mapping[str, str]) -> str:
    try:
        segment = params["client_assertion"].split(".")[1]
        claims = loads_object(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, JoseError):
        raise InvalidClient("the client assertion is malformed") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or params.get("client_id", subject) != subject:
        raise InvalidClient("the client assertion's sub must be the client_id")
    return subject


_BASIC_CHALLENGE = {"www-authenticate": 'Basic realm="tokenward"'}


class ClientAuthenticator:
    def __init__(
        self,
        clients: ClientStore,
        hasher: SecretHasher,
        replay: ReplayCache,
        audiences: frozenset[str],
        clock: Callable[[], float] = time.time,
        keys: ClientKeys | None = None,
        *,
        issuer: str = "",
        profiles: Profiles | None = None,
        signing_algs: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """`issuer`: the one audience a client under a profile that says so may name;
        `profiles`: which profile each client is held to (methods, algorithms, audience);
        `signing_algs`: the algorithms the deployment holds an active key for now (None: not
        checked), so a client pinned to another is refused before a code or grant is spent."""
        self._signing_algs = signing_algs
        self._issuer = issuer
        self._profiles = profiles or Profiles()
        self._keys = keys or ClientKeys()
        self._mtls = MtlsAuthenticator(self._keys)
        self._clients = clients
        self._hasher = hasher
        self._replay = replay
        self._audiences = audiences  # the token endpoint URL and the issuer
        self._clock = clock

    async def authenticate(
        self,
        params: Mapping[str, str],
        authorization: str | None,
        certificate: ClientCertificate | None = None,
    ) -> ClientRecord:
        """`certificate`: the TLS client certificate of the connection (or from a trusted
        proxy), for the mTLS methods; a client_id alone then names an mTLS client."""
        presented = presented_credentials(params, authorization)
        challenge = _BASIC_CHALLENGE if presented.method == "client_secret_basic" else None
        client = await self._clients.get(presented.client_id)
        if (
            client is not None
            and client.active
            and presented.method == "none"
            and client.auth_method in MTLS_METHODS
        ):
            self._check_profile_method(client)
            await self._mtls.authenticate(client, certificate)
            return client
        if client is None or not client.active or client.auth_method != presented.method:
            # One answer for unknown, disabled and wrong-method clients: no client enumeration.
            raise InvalidClient("client authentication failed", headers=challenge)
        self._check_profile_method(client)
        if presented.secret is not None and not self._hasher.matches(
            presented.secret, client.secret_digest
        ):
            raise InvalidClient("client authentication failed", headers=challenge)
        if presented.assertion is not None:
            await self._check_assertion(client, presented.assertion)
        return client

    def _check_profile_method(self, client: ClientRecord) -> None:
        """A method the client's profile forbids (a secret under fapi2) authenticates nothing,
        even when it was registered before the profile applied; nor does a client whose
        tokens would be signed with an algorithm the profile forbids (an RS256 ID token)."""
        profile = self._profiles.for_client(client)
        if not profile.allows_method(client.auth_method):
            raise InvalidClient(
                f"the {profile.name} profile allows only "
                + ", ".join(sorted(profile.auth_methods or ()))
            )
        for alg in (client.id_token_alg, client.access_token_alg):
            refusal = profile.alg_refusal(alg, "for the client's tokens") if alg else None
            if refusal is not None:
                raise InvalidClient(f"{refusal}; register the client again")
        self._check_signing_keys(client)

    def _check_signing_keys(self, client: ClientRecord) -> None:
        """Fail closed: a client whose tokens are pinned to an algorithm with no active key
        here gets nothing, rather than tokens in another algorithm (its API or its own ID-token
        check was promised that one). The operator's to fix, so logged as an error."""
        if self._signing_algs is None:
            return
        pinned = [client.access_token_alg if client.token_format == "jwt" else None]
        pinned.append(client.id_token_alg if "openid" in client.scopes else None)
        available = self._signing_algs()
        for alg in pinned:
            if alg is not None and alg not in available:
                log.error("no_signing_key", client_id=client.client_id, alg=alg)
                raise InvalidClient(
                    f"this server holds no active {alg[:20]} signing key, which the client's "
                    f"tokens are registered for; the operator must add {alg[:20]} to "
                    "TOKENWARD_SIGNING_ALGS"
                )

    async def _check_assertion(self, client: ClientRecord, assertion: str) -> None:
        try:
            kid = parse_compact(assertion).header.get("kid")
            lookup = await self._keys.lookup(client, kid if isinstance(kid, str) else None)
            jws, key = verify_compact(assertion, lookup)
            claims = loads_object(payload_bytes(jws))
        except (JoseError, orjson.JSONDecodeError):
            raise InvalidClient("client authentication failed") from None
        now = self._clock()
        self._check_profile_claims(self._profiles.for_client(client), key.alg.name, claims, now)
        exp, jti, aud = claims.get("exp"), claims.get("jti"), claims.get("aud")
        audiences = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise InvalidClient("the client assertion must have iss = sub = client_id")
        if audiences.isdisjoint(self._audiences):
            raise InvalidClient("the client assertion is not for this server (aud)")
        if type(exp) is not int or not now - 30 < exp <= now + MAX_ASSERTION_LIFETIME:
            raise InvalidClient("the client assertion is expired or lives too long")
        if not isinstance(jti, str) or not await self._replay.first_use(
            f"pkjwt:{client.client_id}:{jti}", exp + 30
        ):
            raise InvalidClient("the client assertion was already used (jti)")

    def _check_profile_claims(
        self, profile: Profile, alg: str, claims: dict[str, object], now: float
    ) -> None:
        refusal = profile.alg_refusal(alg, "client assertions")
        if refusal is not None:
            raise InvalidClient(refusal)
        if profile.assertion_audience_is_issuer and claims.get("aud") != self._issuer:
            # FAPI 2.0 §5.3.2.1: the issuer identifier, as a string, and nothing else.
            raise InvalidClient("the client assertion's aud must be the issuer, as a string")
        if profile.future_skew is not None and not within_skew(claims, now, profile.future_skew):
            raise InvalidClient("the client assertion's iat or nbf is in the future")


def within_skew(claims: dict[str, object], now: float, skew: float) -> bool:
    """`iat` and `nbf`, where present, numbers no more than `skew` seconds ahead of `now`."""
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value > now + skew:
            return False
    return True
