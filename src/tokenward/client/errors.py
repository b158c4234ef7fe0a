"""Errors the SDK raises. Messages are fixed phrases plus OAuth error codes: never a token.

A server's `error_description` is passed on only after `safe_text` has cut it to printable
ASCII, bounded its length and blanked anything shaped like a token or equal to a secret we sent,
so even a careless server cannot make a token surface in a traceback or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

MAX_DESCRIPTION = 200
# JWTs (three base64url segments) and our own opaque prefixes; long base64url runs as a backstop.
_TOKEN_SHAPES = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*|tw[a-z]_[\w-]+|[\w-]{40,}")


def safe_text(text: object, secrets: Iterable[str | None] = ()) -> str:
    value = "".join(ch for ch in str(text) if " " <= ch <= "~")
    for secret in secrets:
        if secret:
            value = value.replace(secret, "[redacted]")
    value = _TOKEN_SHAPES.sub("[redacted]", value)
    return value[:MAX_DESCRIPTION]


class ClientError(Exception):
    """The base of every error of `tokenward.client`."""


class LoginRequired(ClientError):
    """The grant is gone (revoked, expired, reused, or there never was one): sign in again."""

    def __init__(self, message: str = "sign in again", *, error: str | None = None) -> None:
        super().__init__(f"login required: {message}")
        self.error = error


class OAuthResponseError(ClientError):
    """The authorization server answered with an OAuth error (RFC 6749 §5.2) or nonsense."""

    def __init__(self, error: str, description: str = "", *, status_code: int = 0) -> None:
        self.error = safe_text(error)[:64]
        self.description = safe_text(description)
        self.status_code = status_code
        detail = f": {self.description}" if self.description else ""
        super().__init__(f"{self.error} (HTTP {status_code}){detail}")


class DiscoveryError(ClientError):
    """The issuer's metadata could not be fetched or does not describe that issuer."""


class AuthorizationError(ClientError):
    """A sign-in did not complete: denied, timed out, or its response failed a check."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class IdTokenError(ClientError):
    """An ID token failed verification (signature, issuer, audience, expiry, nonce, hashes) or
    the issuer's keys to check it could not be had: the sign-in's result is not to be trusted.
    The message names the check that failed, never the token."""


class StepUpRequired(ClientError):
    """The API refused the token as too weak or too old a sign-in (RFC 9470
    `insufficient_user_authentication`): sign the user in again asking for `acr_values` and
    `max_age`, e.g. `AuthorizationCodePKCE.login(acr_values=e.acr_values, max_age=e.max_age)`.
    Renewing the token would not help (a refresh keeps the sign-in it came from), so the SDK
    does not retry, unless `TokenAuth(step_up=True)` signs in again (once per request)."""

    def __init__(self, acr_values: str | None, max_age: int | None, description: str = "") -> None:
        self.acr_values = acr_values
        self.max_age = max_age
        self.description = safe_text(description)
        wanted = ", ".join(
            part
            for part in (
                f"acr_values={acr_values}" if acr_values else "",
                f"max_age={max_age}" if max_age is not None else "",
            )
            if part
        )
        super().__init__(f"step-up sign-in required ({wanted or 'a fresh sign-in'})")


class InsecureTransportError(ClientError):
    """A token would have been sent over plain HTTP to a host other than this machine."""


class ServerUnreachable(ClientError):
    """The server could not be reached, or did not answer in time (the original error is the
    `__cause__`). Its message names the origin only: a URL's path and query may hold a code."""

    def __init__(self, origin: str, reason: str) -> None:
        super().__init__(f"cannot reach {origin}: {reason}")
        self.origin = origin
        self.reason = reason


def unreachable(url: httpx.URL | str, error: Exception) -> ServerUnreachable:
    """The SDK's error for an httpx failure (raise it `from error`)."""
    try:
        parsed = httpx.URL(str(url))
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}"
    except httpx.InvalidURL:
        origin = "the server (invalid URL)"
    if isinstance(error, httpx.TimeoutException):
        reason = "timed out"
    elif isinstance(error, httpx.ConnectError):
        reason = "connection failed"
    elif isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        reason = "not an http or https URL"
    elif isinstance(error, httpx.RemoteProtocolError):
        reason = "the server broke off the HTTP exchange"
    else:
        reason = f"transport error ({type(error).__name__})"
    return ServerUnreachable(safe_text(origin), reason)


class StoreError(ClientError):
    """Tokens could not be loaded or saved."""


class InsecureStoreError(StoreError):
    """The token file is readable or writable by others, or not ours: refused unread."""
