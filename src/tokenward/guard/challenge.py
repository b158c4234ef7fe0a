"""How a refused protected request is answered: the RFC 6750 §3.1 challenge (and RFC 9449 §7.1
for DPoP) for a `core.errors.BearerError`. Edges (server, gateway, resource) send what it returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tokenward.core.errors import (
    BearerError,
    InsufficientUserAuthentication,
    InvalidDpopProof,
    TemporarilyUnavailable,
    UseDpopNonce,
)


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
    if isinstance(error, InsufficientUserAuthentication):  # RFC 9470 §3
        if error.acr_values:
            params.append(f"acr_values={_quote(error.acr_values)}")
        if error.max_age is not None:
            params.append(f"max_age={error.max_age}")
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
