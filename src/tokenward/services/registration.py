"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

`POST /register` creates a client from its metadata; the answer carries a registration access
token with which the client (only it) reads, replaces and deletes its registration at
`/register/{client_id}`. Whether anyone may register is the operator's choice
(TOKENWARD_REGISTRATION): `off`, `initial_token` (an initial access token from the operator,
bounded in time and uses) or `open`. Registrations are rate limited per client address, and
open ones capped in total (TOKENWARD_REGISTRATION_MAX_OPEN_CLIENTS, counted in the database):
past the cap the answer is 503 `temporarily_unavailable`. RFC 7591 §3.2.2's codes all say the
request is wrong, which it is not; `temporarily_unavailable` (RFC 6749 §4.1.2.1: the server
cannot handle the request now) tells a client to come back later, and an operator's monitoring
sees a 5xx.

The metadata goes through `ClientAdmin.build_client`, the one validation path of the CLI, the
admin API and the console, so a dynamically registered client is held to the same rules
(redirect URIs, auth methods, keys, algorithms, sizes). On top, what only a stranger's
registration needs: the scopes are bounded by TOKENWARD_REGISTRATION_SCOPES, token exchange and
consent skipping stay the operator's to grant, response types must agree with grant types (RFC
7591 §2.1), and each field has the JSON type RFC 7591 gives it. Fields we do not know are
ignored (§2). A software statement (§2.3), when present, is verified and its claims override
the request's.

Tokens are 256-bit random values kept only as keyed digests (their own subkey) and compared in
constant time; the registration access token is replaced on every update (RFC 7592 §2.2).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from tokenward.core.ports import ClientStore, InitialAccessTokens, RegistrationAccessTokens
from tokenward.core.ratelimits import RateDecision, RatePolicy
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_auth import METHODS, SecretHasher
from tokenward.oauth.errors import (
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidSoftwareStatement,
    InvalidToken,
    TemporarilyUnavailable,
    TooManyRequests,
    UnapprovedSoftwareStatement,
)
from tokenward.oauth.mtls import SUBJECT_FIELDS
from tokenward.oauth.software_statements import SoftwareStatements
from tokenward.services.client_changes import narrowed
from tokenward.services.clients import SECRET_METHODS, ClientAdmin
from tokenward.services.errors import AdminError, RedirectUriError
from tokenward.services.revoking import Watermarks

OFF, INITIAL_TOKEN, OPEN = "off", "initial_token", "open"
AUTHORIZATION_CODE = "authorization_code"
# What a stranger may register: token exchange needs the operator's policy (audiences).
GRANT_TYPES = (
    AUTHORIZATION_CODE,
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
)
RESPONSE_TYPES = ("code",)
MAX_NAME = 200
MAX_SCOPE = 1024
MAX_LIST = 20  # grant types, response types, URIs: the same bound as client_uris.MAX_URIS
MAX_TOKEN = 512  # a bearer token longer than this is none of ours

log = structlog.get_logger(__name__)


class RateLimiter(Protocol):
    """`gateway.ratelimit.MemoryRateLimiter` or `store.redis_ratelimit.RedisRateLimiter`."""

    async def acquire(self, key: str, policy: RatePolicy, now: float) -> RateDecision: ...


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    mode: str  # off | initial_token | open
    scopes: frozenset[str]  # what a registered client may hold
    rate: RatePolicy  # registrations per client address
    require_statement: bool = False
    max_open_clients: int = 10_000  # clients registered openly, in the whole deployment


class ClientRegistration:
    def __init__(
        self,
        *,
        issuer: str,
        policy: RegistrationPolicy,
        admin: ClientAdmin,
        clients: ClientStore,
        initial_tokens: InitialAccessTokens,
        access_tokens: RegistrationAccessTokens,
        digests: SecretHasher,
        statements: SoftwareStatements,
        limiter: RateLimiter,
        watermarks: Watermarks,
        clock: Callable[[], float],
    ) -> None:
        self._base = issuer.rstrip("/") + "/register"
        self._policy = policy
        self._admin = admin
        self._clients = clients
        self._initial = initial_tokens
        self._access = access_tokens
        self._digests = digests
        self._statements = statements
        self._limiter = limiter
        self._watermarks = watermarks
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._policy.mode != OFF

    async def register(
        self, metadata: object, authorization: str | None, client_ip: str | None
    ) -> dict[str, Any]:
        """RFC 7591 §3.1: a new client from `metadata` (the parsed JSON body); the §3.2.1
        answer, with its secret (if any) and registration access token shown once."""
        if not self.enabled:
            raise InvalidToken("dynamic client registration is off")
        now = self._clock()
        decision = await self._limiter.acquire(f"register:{client_ip}", self._policy.rate, now)
        if not decision.allowed:
            retry = str(max(1, int(decision.retry_after + 0.999)))
            raise TooManyRequests(
                "too many registrations; retry later", headers={"retry-after": retry}
            )
        initial_digest = None
        if self._policy.mode == INITIAL_TOKEN:
            initial_digest = self._digests.digest(_bearer(authorization))
            if await self._initial.find(initial_digest, now) is None:
                raise InvalidToken("the initial access token is invalid, expired or used up")
        fields = await self._with_statement(metadata)
        client_id = secrets.token_urlsafe(16)
        client, secret = self._build(client_id, fields, created_at=now)
        # Counted only now, so a registration refused for its metadata costs no use; of
        # concurrent registrations with the last use, one gets it.
        if initial_digest is not None and await self._initial.spend(initial_digest, now) is None:
            raise InvalidToken("the initial access token is invalid, expired or used up")
        token = secrets.token_urlsafe(32)
        digest = self._digests.digest(token)
        if self._policy.mode == OPEN:
            # The place is taken before the client is stored: of concurrent registrations at
            # the cap, only those the database let through create a client.
            if not await self._access.add_open(client_id, digest, self._policy.max_open_clients):
                log.warning("open_registration_cap_reached", cap=self._policy.max_open_clients)
                raise TemporarilyUnavailable(
                    "this server accepts no more open registrations; ask its operator"
                )
            try:
                await self._clients.put(client)
            except BaseException:
                await self._access.delete(client_id)  # free the place it took
                raise
        else:
            await self._clients.put(client)
            await self._access.put(client_id, digest)
        return self._answer(client, secret, token)

    async def read(self, client_id: str, authorization: str | None) -> dict[str, Any]:
        """RFC 7592 §2.1."""
        client = await self._authorized(client_id, authorization)
        return self._answer(client, None, None)

    async def update(
        self, client_id: str, authorization: str | None, metadata: object
    ) -> dict[str, Any]:
        """RFC 7592 §2.2: the registration replaced by `metadata` (omitted fields take their
        defaults), checked as at registration. The secret is kept while the client keeps a
        secret method; a new registration access token replaces the old one. An update that
        takes a permission away revokes every grant the client holds
        (services/client_changes.py)."""
        client = await self._authorized(client_id, authorization)
        if not isinstance(metadata, Mapping):
            raise InvalidClientMetadata("the body must be a JSON object")
        if metadata.get("client_id") != client_id:
            raise InvalidClientMetadata("client_id must be the client's own")
        presented_secret = metadata.get("client_secret")
        if presented_secret is not None and not (
            isinstance(presented_secret, str)
            and self._admin.secret_matches(presented_secret, client.secret_digest)
        ):
            raise InvalidClientMetadata("client_secret must be the client's current secret")
        fields = await self._with_statement(metadata)
        changed, secret = self._build(client_id, fields, created_at=client.created_at)
        if changed.auth_method in SECRET_METHODS and client.auth_method in SECRET_METHODS:
            changed, secret = replace(changed, secret_digest=client.secret_digest), None
        changed = replace(changed, disabled=client.disabled)  # the operator's, not the client's
        token = secrets.token_urlsafe(32)
        await self._clients.put(changed)
        await self._access.put(client_id, self._digests.digest(token))
        taken = narrowed(client, changed)
        if taken:
            # After the put: a token issued from now on is under the new registration.
            await self._watermarks.revoke(client=client_id)
            log.info("client_narrowed_grants_revoked", client_id=client_id, narrowed=taken)
        return self._answer(changed, secret, token)

    async def delete(self, client_id: str, authorization: str | None) -> None:
        """RFC 7592 §2.3: the client is gone and every token it holds revoked."""
        await self._authorized(client_id, authorization)
        await self._clients.delete(client_id)
        await self._access.delete(client_id)
        await self._watermarks.revoke(client=client_id)

    def build_owned(
        self,
        client_id: str,
        metadata: Mapping[str, Any],
        *,
        allowed_scopes: frozenset[str],
        created_at: float,
    ) -> ClientRecord:
        """The developer portal's registration (docs/portal.md): `metadata` checked exactly as
        at `POST /register`, scopes bounded by `allowed_scopes` instead. No secret: one is made
        when the developer reveals it, after an operator approved the client."""
        client, _secret = self._build(
            client_id, metadata, created_at=created_at, allowed=allowed_scopes
        )
        return replace(client, secret_digest=None)

    # --- authentication ------------------------------------------------------------------
    async def _authorized(self, client_id: str, authorization: str | None) -> ClientRecord:
        presented = _bearer(authorization)
        stored = await self._access.get(client_id) if len(client_id) <= 128 else None
        # Constant time; a token of another client never matches (digests are per client).
        if not self._digests.matches(presented, stored):
            raise InvalidToken("the registration access token is invalid")
        client = await self._clients.get(client_id)
        if client is None:  # RFC 7592 §2.1: gone (the operator deleted it): so is the token
            await self._access.delete(client_id)
            raise InvalidToken("the registration access token is invalid")
        return client

    # --- metadata ------------------------------------------------------------------------
    async def _with_statement(self, metadata: object) -> dict[str, Any]:
        if not isinstance(metadata, Mapping):
            raise InvalidClientMetadata("the body must be a JSON object")
        fields = dict(metadata)
        statement = fields.pop("software_statement", None)
        if statement is None:
            if self._policy.require_statement:
                raise InvalidSoftwareStatement("a software statement is required")
            return fields
        if not self._statements.configured:
            raise UnapprovedSoftwareStatement("this server accepts no software statements")
        return {**fields, **await self._statements.metadata(statement)}  # §2.3: it wins

    def _build(
        self,
        client_id: str,
        fields: Mapping[str, Any],
        *,
        created_at: float,
        allowed: frozenset[str] | None = None,
    ) -> tuple[ClientRecord, str | None]:
        read = _Fields(fields)
        method = read.text("token_endpoint_auth_method") or "client_secret_basic"
        if method not in METHODS:
            raise InvalidClientMetadata(
                f"token_endpoint_auth_method must be one of {', '.join(METHODS)}"
            )
        grant_types = read.texts("grant_types", default=[AUTHORIZATION_CODE])
        unknown = [grant for grant in grant_types if grant not in GRANT_TYPES]
        if unknown or not grant_types:
            raise InvalidClientMetadata(f"grant_types must be among {', '.join(GRANT_TYPES)}")
        code = AUTHORIZATION_CODE in grant_types
        response_types = read.texts("response_types", default=list(RESPONSE_TYPES) if code else [])
        if any(kind not in RESPONSE_TYPES for kind in response_types):
            raise InvalidClientMetadata("response_types may only be code")
        if code != ("code" in response_types):  # RFC 7591 §2.1
            raise InvalidClientMetadata(
                "response_types code and grant_types authorization_code go together"
            )
        redirect_uris = read.texts("redirect_uris", default=[])
        if code and not redirect_uris:
            raise InvalidRedirectUri("redirect_uris are required for authorization_code")
        scopes = self._scopes(
            read.text("scope"), self._policy.scopes if allowed is None else allowed
        )
        jwks = read.object("jwks")
        backchannel = read.text("backchannel_logout_uri")
        try:
            return self._admin.build_client(
                client_id,
                grant_types=list(dict.fromkeys(grant_types)),
                scope=" ".join(sorted(scopes)),
                redirect_uris=redirect_uris,
                public=method == "none",
                auth_method=method,
                jwks=json.dumps(jwks) if jwks is not None else None,
                jwks_uri=read.text("jwks_uri"),
                post_logout_redirect_uris=read.texts("post_logout_redirect_uris", default=[]),
                tls_subject={name: value for name in SUBJECT_FIELDS if (value := read.text(name))},
                tls_bound_tokens=read.flag("tls_client_certificate_bound_access_tokens"),
                id_token_signed_response_alg=read.text("id_token_signed_response_alg"),
                backchannel_logout_uri=backchannel,
                backchannel_logout_session_required=bool(
                    read.flag("backchannel_logout_session_required")
                ),
                require_par=bool(read.flag("require_pushed_authorization_requests")),
                require_signed_request_object=bool(read.flag("require_signed_request_object")),
                name=read.text("client_name", limit=MAX_NAME) or "",
                created_at=created_at,
            )
        except RedirectUriError as exc:
            raise InvalidRedirectUri(str(exc)) from None
        except AdminError as exc:
            raise InvalidClientMetadata(str(exc)) from None

    @staticmethod
    def _scopes(requested: str | None, allowed: frozenset[str]) -> frozenset[str]:
        if requested is None:
            return allowed
        if len(requested) > MAX_SCOPE:
            raise InvalidClientMetadata(f"scope is longer than {MAX_SCOPE} characters")
        asked = frozenset(requested.split())
        refused = sorted(asked - allowed)
        if refused:
            raise InvalidClientMetadata(f"scope may not include {' '.join(refused)[:200]}")
        return asked

    # --- the answer ----------------------------------------------------------------------
    def _answer(
        self, client: ClientRecord, secret: str | None, token: str | None
    ) -> dict[str, Any]:
        """RFC 7591 §3.2.1 / RFC 7592 §3: the registered metadata under their RFC names."""
        code = AUTHORIZATION_CODE in client.grant_types
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "client_id_issued_at": int(client.created_at),
            "token_endpoint_auth_method": client.auth_method,
            "grant_types": list(client.grant_types),
            "response_types": list(RESPONSE_TYPES) if code else [],
            "redirect_uris": list(client.redirect_uris),
            "scope": " ".join(sorted(client.scopes)),
            "id_token_signed_response_alg": client.id_token_alg,
            "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
            "require_signed_request_object": client.require_signed_request_object,
            "tls_client_certificate_bound_access_tokens": (
                client.tls_client_certificate_bound_access_tokens
            ),
            "registration_client_uri": f"{self._base}/{client.client_id}",
        }
        optional = {
            "client_name": client.name or None,
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris) or None,
            "jwks": json.loads(client.jwks) if client.jwks else None,
            "jwks_uri": client.jwks_uri,
            "backchannel_logout_uri": client.backchannel_logout_uri,
            **{name: getattr(client, name) for name in SUBJECT_FIELDS},
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if client.backchannel_logout_uri is not None:
            body["backchannel_logout_session_required"] = client.backchannel_logout_session_required
        if client.secret_digest is not None and client.auth_method in SECRET_METHODS:
            body["client_secret_expires_at"] = 0  # RFC 7591 §3.2.1: does not expire
        if secret is not None:
            body["client_secret"] = secret
        if token is not None:
            body["registration_access_token"] = token
        return body


class _Fields:
    """The metadata read strictly: each field absent (None) or of its RFC 7591 JSON type."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = fields

    def text(self, name: str, *, limit: int = 2048) -> str | None:
        value = self._fields.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidClientMetadata(f"{name} must be a string of at most {limit} characters")
        return value

    def texts(self, name: str, *, default: list[str]) -> list[str]:
        value = self._fields.get(name)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or len(value) > MAX_LIST
            or not all(isinstance(item, str) and len(item) <= 2048 for item in value)
        ):
            raise InvalidClientMetadata(f"{name} must be a list of at most {MAX_LIST} strings")
        return value

    def flag(self, name: str) -> bool | None:
        value = self._fields.get(name)
        if value is not None and not isinstance(value, bool):
            raise InvalidClientMetadata(f"{name} must be true or false")
        return value

    def object(self, name: str) -> dict[str, Any] | None:
        value = self._fields.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidClientMetadata(f"{name} must be a JSON object")
        return value


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        raise InvalidToken("a bearer token is required")
    return token
