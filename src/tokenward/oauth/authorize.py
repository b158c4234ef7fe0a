"""Authorization requests (RFC 6749 §4.1.1, OAuth 2.1, OIDC Core §3.1.2.1), validated strictly.

Until the client and its redirect URI are known good, errors are shown on our own page (never
redirected: that would make us an open redirector); afterwards they go back to the client with
`state` and `iss` (RFC 9207).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tokenward.oauth import pkce
from tokenward.oauth.errors import (
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from tokenward.oauth.resources import audience_for
from tokenward.oauth.scopes import granted_scopes, parse_scope
from tokenward.store.protocols import ClientStore
from tokenward.store.records import ClientRecord

PROMPTS = frozenset({"none", "login", "consent", "select_account"})
MAX_STATE = 1024
MAX_NONCE = 512


class ErrorPage(Exception):
    """An error we must show ourselves: the client or redirect URI cannot be trusted."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RedirectError(Exception):
    """An error sent back to the validated redirect URI."""

    def __init__(
        self, error: OAuthError, redirect_uri: str, state: str | None, issuer: str
    ) -> None:
        super().__init__(error.description)
        self.error = error
        self.location = redirect_to(redirect_uri, {**error.body(), "state": state, "iss": issuer})


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool  # RFC 6749 §4.1.3: then the token request must repeat it
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    acr_values: str | None = None
    login_hint: str | None = None
    dpop_jkt: str | None = None  # RFC 9449 §10: binds the code to a DPoP key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthorizationRequest:
        return cls(
            **{
                **data,
                "scopes": tuple(data["scopes"]),
                "audience": tuple(data["audience"]),
                "prompt": tuple(data["prompt"]),
            }
        )


def redirect_to(uri: str, params: dict[str, str | None]) -> str:
    """Add response parameters to the redirect URI's query, keeping what it already has."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in params.items() if value is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _single(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    params: dict[str, str] = {}
    seen: set[str] = set()
    repeated: set[str] = set()
    for name, value in pairs:
        if name in seen:
            repeated.add(name)
        seen.add(name)
        if value:
            params[name] = value
    return params, repeated


class AuthorizationValidator:
    def __init__(self, clients: ClientStore, issuer: str, default_audience: str) -> None:
        self._clients = clients
        self._issuer = issuer
        self._default_audience = default_audience

    async def validate(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[AuthorizationRequest, ClientRecord]:
        params, repeated = _single(pairs)
        resources = tuple(value for name, value in pairs if name == "resource" and value)
        repeated.discard("resource")  # RFC 8707: resource may repeat
        client = await self._client(params, repeated)
        redirect_uri, given = self._redirect_uri(params, repeated, client)
        state = params.get("state")
        if state is not None and len(state) > MAX_STATE:
            state = None
        try:
            return self._checked(params, repeated, resources, client, redirect_uri, given), client
        except OAuthError as error:
            raise RedirectError(error, redirect_uri, state, self._issuer) from None

    async def _client(self, params: dict[str, str], repeated: set[str]) -> ClientRecord:
        if "client_id" in repeated:
            raise ErrorPage("The client_id parameter is repeated.")
        client_id = params.get("client_id")
        client = await self._clients.get(client_id) if client_id else None
        if client is None or client.disabled:
            raise ErrorPage(
                "The application that sent you here is not registered with this server."
            )
        return client

    @staticmethod
    def _redirect_uri(
        params: dict[str, str], repeated: set[str], client: ClientRecord
    ) -> tuple[str, bool]:
        if "redirect_uri" in repeated:
            raise ErrorPage("The redirect_uri parameter is repeated.")
        uri = params.get("redirect_uri")
        if uri is None:
            if len(client.redirect_uris) != 1:
                raise ErrorPage(
                    "The request names no redirect_uri and the application has several."
                )
            return client.redirect_uris[0], False
        if uri not in client.redirect_uris and not _loopback_match(uri, client.redirect_uris):
            raise ErrorPage("The redirect_uri is not registered for this application.")
        return uri, True

    def _checked(
        self,
        params: dict[str, str],
        repeated: set[str],
        resources: tuple[str, ...],
        client: ClientRecord,
        redirect_uri: str,
        given: bool,
    ) -> AuthorizationRequest:
        response_type = params.get("response_type")
        if response_type is None:
            raise InvalidRequest("response_type is required")
        if response_type != "code":  # OAuth 2.1: no implicit, no hybrid
            raise UnsupportedResponseType("only response_type=code is supported")
        if repeated:
            raise InvalidRequest(f"parameter {sorted(repeated)[0][:40]!r} is repeated")
        if "authorization_code" not in client.grant_types:
            raise UnauthorizedClient("the client may not use the authorization code grant")
        if "request" in params or "request_uri" in params:
            raise InvalidRequest("request objects are not supported")
        if params.get("response_mode", "query") != "query":
            raise InvalidRequest("only response_mode=query is supported")
        challenge = pkce.check_challenge(
            params.get("code_challenge"), params.get("code_challenge_method")
        )
        scopes = granted_scopes(parse_scope(params.get("scope")), client.scopes)
        if not scopes:
            raise InvalidScope("no scope was requested and the client has none")
        return AuthorizationRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            redirect_uri_given=given,
            scopes=tuple(sorted(scopes)),
            audience=audience_for(resources, client, self._default_audience),
            code_challenge=challenge,
            state=params.get("state"),
            nonce=_bounded(params.get("nonce"), MAX_NONCE, "nonce"),
            prompt=_prompt(params.get("prompt")),
            max_age=_max_age(params.get("max_age")),
            acr_values=_bounded(params.get("acr_values"), 256, "acr_values"),
            login_hint=_bounded(params.get("login_hint"), 256, "login_hint"),
            dpop_jkt=_dpop_jkt(params.get("dpop_jkt")),
        )


def _bounded(value: str | None, limit: int, name: str) -> str | None:
    if value is not None and len(value) > limit:
        raise InvalidRequest(f"{name} is too long")
    return value


def _prompt(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    prompts = tuple(value.split(" "))
    if not set(prompts) <= PROMPTS:
        raise InvalidRequest("unsupported prompt value")
    if "none" in prompts and len(prompts) > 1:  # OIDC Core §3.1.2.1
        raise InvalidRequest("prompt=none cannot be combined with other values")
    return prompts


def _max_age(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise InvalidRequest("max_age must be a non-negative integer")
    return int(value)


def _dpop_jkt(value: str | None) -> str | None:
    if value is not None and (
        len(value) != 43 or not value.replace("-", "").replace("_", "").isalnum()
    ):
        raise InvalidRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint")
    return value


def _loopback_match(uri: str, registered: tuple[str, ...]) -> bool:
    """RFC 8252 §7.3: for loopback IP literals, any port; everything else matches exactly."""
    presented = urlsplit(uri)
    if presented.scheme != "http" or presented.hostname not in ("127.0.0.1", "::1"):
        return False
    for candidate in registered:
        allowed = urlsplit(candidate)
        if (
            (allowed.scheme, allowed.hostname, allowed.path, allowed.query)
            == (presented.scheme, presented.hostname, presented.path, presented.query)
            and not presented.fragment
            and presented.username is None
        ):
            return True
    return False
