"""RFC 6750 §3.1 errors and the one function that renders them.

Descriptions are fixed phrases written here and in the JOSE layer; none carries token or key
material, so they are safe in a response header and a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar


class BearerError(Exception):
    error: ClassVar[str | None] = None
    status: ClassVar[int] = 401

    def __init__(self, description: str = "", *, scope: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.scope = scope


class MissingToken(BearerError):
    """No bearer credentials at all: RFC 6750 §3.1 says answer without an error code."""


class InvalidRequest(BearerError):
    error = "invalid_request"
    status = 400


class InvalidToken(BearerError):
    error = "invalid_token"
    status = 401


class InsufficientScope(BearerError):
    error = "insufficient_scope"
    status = 403


class TemporarilyUnavailable(BearerError):
    """Revocation state is too stale to trust: fail closed (RFC 6749 §4.1.2.1 code)."""

    error = "temporarily_unavailable"
    status = 503


@dataclass(frozen=True, slots=True)
class Challenge:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _quote(value: str) -> str:
    # RFC 9110 §5.6.4 quoted-string; drop anything outside printable ASCII.
    printable = "".join(ch for ch in value if " " <= ch <= "~")
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(error: BearerError, realm: str = "tokenward", scheme: str = "Bearer") -> Challenge:
    params = [f"realm={_quote(realm)}"]
    if error.error is not None:
        params.append(f"error={_quote(error.error)}")
        if error.description:
            params.append(f"error_description={_quote(error.description)}")
    if error.scope:
        params.append(f"scope={_quote(error.scope)}")
    headers = [
        ("www-authenticate", f"{scheme} " + ", ".join(params)),
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ]
    payload: dict[str, str] = {"error": error.error or "unauthorized"}
    if error.description:
        payload["error_description"] = error.description
    if error.scope:
        payload["scope"] = error.scope
    if isinstance(error, TemporarilyUnavailable):
        headers.append(("retry-after", "1"))
    return Challenge(error.status, headers, json.dumps(payload).encode())
