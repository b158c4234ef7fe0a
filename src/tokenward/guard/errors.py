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


class InvalidDpopProof(BearerError):
    """RFC 9449 §7.1: the DPoP proof is missing, malformed or does not fit the request."""

    error = "invalid_dpop_proof"
    status = 401


class UseDpopNonce(BearerError):
    """RFC 9449 §9: retry with the nonce in the DPoP-Nonce header."""

    error = "use_dpop_nonce"
    status = 401

    def __init__(self, description: str, nonce: str) -> None:
        super().__init__(description)
        self.nonce = nonce


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


def _auth_params(error: BearerError, realm: str) -> list[str]:
    params = [f"realm={_quote(realm)}"]
    if error.error is not None:
        params.append(f"error={_quote(error.error)}")
        if error.description:
            params.append(f"error_description={_quote(error.description)}")
    if error.scope:
        params.append(f"scope={_quote(error.scope)}")
    return params


def _body(error: BearerError) -> bytes:
    payload: dict[str, str] = {"error": error.error or "unauthorized"}
    if error.description:
        payload["error_description"] = error.description
    if error.scope:
        payload["scope"] = error.scope
    return json.dumps(payload).encode()


def challenge(
    error: BearerError,
    realm: str = "tokenward",
    scheme: str = "Bearer",
    dpop_algs: tuple[str, ...] = (),
) -> Challenge:
    """The response for an error. With `dpop_algs`, DPoP is offered too (RFC 9449 §7.1): DPoP
    errors answer with the DPoP scheme only; others with both challenges."""
    dpop_error = isinstance(error, InvalidDpopProof | UseDpopNonce)
    scheme = "DPoP" if dpop_error else scheme
    params = _auth_params(error, realm)
    algs = f"algs={_quote(' '.join(dpop_algs))}"
    if scheme == "DPoP" and dpop_algs:
        params.append(algs)
    headers = [("www-authenticate", f"{scheme} " + ", ".join(params))]
    if dpop_algs and scheme != "DPoP":
        headers.append(("www-authenticate", f"DPoP {algs}"))
    headers += [("content-type", "application/json"), ("cache-control", "no-store")]
    if isinstance(error, UseDpopNonce):
        headers.append(("dpop-nonce", error.nonce))
    if isinstance(error, TemporarilyUnavailable):
        headers.append(("retry-after", "1"))
    return Challenge(error.status, headers, _body(error))
