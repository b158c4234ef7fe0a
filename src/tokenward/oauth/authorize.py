"""Authorization requests (RFC 6749 §4.1.1, OAuth 2.1, OIDC Core §3.1.2.1), validated strictly.

Until the client and its redirect URI are known good, errors are shown on our own page (never
redirected: that would make us an open redirector); afterwards they go back to the client with
`state` and `iss` (RFC 9207).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tokenward.core.ports import ClientStore
from tokenward.core.records import ClientRecord
from tokenward.oauth import pkce
from tokenward.oauth.errors import (
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from tokenward.oauth.profiles import Profiles, redirect_uri_problem
from tokenward.oauth.request_object import RequestObjects
from tokenward.oauth.request_uri import RequestUris
from tokenward.oauth.resources import audience_for
from tokenward.oauth.scopes import granted_scopes, parse_scope

PROMPTS = frozenset({"none", "login", "consent", "select_account"})
MAX_STATE = 1024
MAX_NONCE = 512
MAX_PARAMS = 64  # parameters per request, repeats included
MAX_RESOURCES = 16
MAX_NAME = 64
# The longest value each parameter may have; any other (an extension we ignore) gets
# DEFAULT_MAX. They travel sealed through the sign-in forms and back in redirects, so all are
# bounded, not just the ones we read.
LIMITS = {
    "client_id": 256,
    "redirect_uri": 2048,
    "response_type": 64,
    "response_mode": 32,
    "scope": 2048,
    "state": MAX_STATE,
    "nonce": MAX_NONCE,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "prompt": 64,
    "max_age": 10,
    "acr_values": 256,
    "login_hint": 256,
    "dpop_jkt": 64,
    "resource": 2048,
    "display": 32,
    "ui_locales": 256,
    "claims_locales": 256,
}
DEFAULT_MAX = 2048
# RFC 8252 §7.3: a loopback IP literal with an optional port, 1-65535, digits only.
_LOOPBACK_NETLOC = re.compile(r"(?:127\.0\.0\.1|\[::1\])(?::([1-9][0-9]{0,4}))?")


class ErrorPage(Exception):
    """An error we must show ourselves: the client or redirect URI cannot be trusted."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RedirectError(Exception):
    """An error sent back to the validated redirect URI."""

    def __init__(
        self,
        error: OAuthError,
        redirect_uri: str,
        state: str | None,
        issuer: str,
        status: int = 302,
    ) -> None:
        super().__init__(error.description)
        self.error = error
        self.status = status  # the profile's: 303 under fapi2
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
    profile: str = "baseline"  # the security profile the request was checked under

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
    """`uris` and `request_objects`: PAR (RFC 9126) and JAR (RFC 9101); without them both
    `request_uri` and `request` are refused. `require_par` / `require_signed`: server-wide, as
    the client records' flags are per client."""

    def __init__(
        self,
        clients: ClientStore,
        issuer: str,
        default_audience: str,
        *,
        uris: RequestUris | None = None,
        request_objects: RequestObjects | None = None,
        require_par: bool = False,
        require_signed: bool = False,
        profiles: Profiles | None = None,
    ) -> None:
        self.profiles = profiles or Profiles()
        self._clients = clients
        self._issuer = issuer
        self._default_audience = default_audience
        self._uris = uris
        self._request_objects = request_objects
        self.require_par = require_par
        self.require_signed = require_signed

    def par_required(self, client: ClientRecord) -> bool:
        return (
            self.require_par
            or client.require_pushed_authorization_requests
            or self.profiles.for_client(client).require_par
        )

    def signed_required(self, client: ClientRecord) -> bool:
        return self.require_signed or client.require_signed_request_object

    async def validate(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[AuthorizationRequest, ClientRecord]:
        if len(pairs) > MAX_PARAMS:
            raise ErrorPage("The sign-in link has too many parameters.")
        params, repeated = _single(pairs)
        client = await self._client(params, repeated)
        resolved, signed = await self._resolved(pairs, params, repeated, client)
        if resolved is not pairs and self.signed_required(client) and not signed:
            # A pushed request of a client that was told to sign after it pushed.
            raise ErrorPage("The application must sign its sign-in requests.")
        return self.check(client, resolved), client

    def check(self, client: ClientRecord, pairs: Sequence[tuple[str, str]]) -> AuthorizationRequest:
        """The request's parameters checked for this (known, enabled) client: `ErrorPage` while
        the redirect URI is not established, `RedirectError` afterwards."""
        if len(pairs) > MAX_PARAMS:
            raise ErrorPage("The sign-in link has too many parameters.")
        params, repeated = _single(pairs)
        resources = tuple(value for name, value in pairs if name == "resource" and value)
        repeated.discard("resource")  # RFC 8707: resource may repeat
        if "client_id" in repeated or params.get("client_id", client.client_id) != client.client_id:
            raise ErrorPage("The client_id parameter is repeated or names another application.")
        redirect_uri, given = self._redirect_uri(params, repeated, client)
        profile = self.profiles.for_client(client)
        problem = redirect_uri_problem(profile, redirect_uri)
        if problem is not None:  # registered before the client (or the server) went fapi2
            raise ErrorPage(f"The redirect_uri cannot be used: {problem}.")
        state = params.get("state")
        if state is not None and len(state) > MAX_STATE:
            state = None
        try:
            checked = self._checked(params, repeated, resources, client, redirect_uri, given)
        except OAuthError as error:
            raise RedirectError(
                error, redirect_uri, state, self._issuer, profile.redirect_status
            ) from None
        return replace(checked, profile=profile.name)

    async def _resolved(
        self,
        pairs: Sequence[tuple[str, str]],
        params: dict[str, str],
        repeated: set[str],
        client: ClientRecord,
    ) -> tuple[Sequence[tuple[str, str]], bool]:
        """The parameters that count: a pushed request's (RFC 9126 §4) or a request object's
        (RFC 9101 §5), ignoring whatever else the link carries; else the link's own."""
        if {"request", "request_uri"} & repeated:
            raise ErrorPage("The request or request_uri parameter is repeated.")
        if "request_uri" in params:
            if self._uris is None or "request" in params:
                raise ErrorPage("This sign-in link carries a request_uri this server cannot use.")
            try:
                return await self._uris.resolve(params["request_uri"], client.client_id)
            except OAuthError:
                raise ErrorPage(
                    "This sign-in link expired or was already used: start again from the "
                    "application."
                ) from None
        if self.par_required(client):
            raise self._refusal(
                params, repeated, client, InvalidRequest("pushed authorization requests only")
            )
        if "request" in params:
            if self._request_objects is None:
                raise ErrorPage("This server does not accept request objects.")
            try:
                return await self._request_objects.verify(client, params["request"]), True
            except OAuthError as exc:
                # RFC 9101 §6.3: invalid_request_object, to the client's registered redirect URI
                # (the link's, when it is registered), never to one the object names.
                raise self._refusal(params, repeated, client, exc) from None
        if self.signed_required(client):
            raise self._refusal(
                params, repeated, client, InvalidRequest("signed request objects only")
            )
        return pairs, False

    def _refusal(
        self, params: dict[str, str], repeated: set[str], client: ClientRecord, error: OAuthError
    ) -> RedirectError:
        """Back to the redirect URI, once it is known to be the client's (else our own page)."""
        redirect_uri, _given = self._redirect_uri(params, repeated, client)
        state = params.get("state")
        state = state if state is not None and len(state) <= MAX_STATE else None
        status = self.profiles.for_client(client).redirect_status
        return RedirectError(error, redirect_uri, state, self._issuer, status)

    async def _client(self, params: dict[str, str], repeated: set[str]) -> ClientRecord:
        if "client_id" in repeated:
            raise ErrorPage("The client_id parameter is repeated.")
        client_id = params.get("client_id")
        if client_id is not None and len(client_id) > LIMITS["client_id"]:
            raise ErrorPage("The client_id parameter is too long.")
        client = await self._clients.get(client_id) if client_id else None
        if client is None or not client.active:
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
        if uri is not None and len(uri) > LIMITS["redirect_uri"]:
            raise ErrorPage("The redirect_uri parameter is too long.")
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
        _check_sizes(params, resources)
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


def _check_sizes(params: dict[str, str], resources: tuple[str, ...]) -> None:
    """Every parameter bounded (RFC 6749 §4.1.2.1: invalid_request), known or not."""
    if len(resources) > MAX_RESOURCES:
        raise InvalidRequest("too many resource parameters")
    for name, value in [*params.items(), *(("resource", r) for r in resources)]:
        if len(name) > MAX_NAME:
            raise InvalidRequest("a parameter name is too long")
        if len(value) > LIMITS.get(name, DEFAULT_MAX):
            raise InvalidRequest(f"{name} is too long")


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
    # The whole netloc: no userinfo; a port of digits only, 1-65535, not zero-padded.
    loopback = _LOOPBACK_NETLOC.fullmatch(presented.netloc)
    if presented.scheme != "http" or loopback is None:
        return False
    if loopback.group(1) is not None and int(loopback.group(1)) > 65535:
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
