"""Errors raised in one layer and handled in another.

`JoseError`: a token, key or key set failed a check. `BearerError` and its subclasses: RFC 6750
§3.1 (and RFC 9449) refusals of a protected request, raised by the guard and caught by the
protocol core (introspection, revocation) and the edges, which render them
(`guard.challenge`). Descriptions are fixed phrases written here and in the JOSE layer; none
carries token or key material, so they are safe in a response header and a log line.
"""

from __future__ import annotations

from typing import ClassVar


class JoseError(ValueError):
    """A token, key or key set is malformed or fails a check. Messages never hold key material.

    The base of `tokens.errors` (raised by the JOSE layer) and of `core.claims.ClaimError`.
    """


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


class InvalidTokenForNow(InvalidToken):
    """A refusal the same token may outlive: it is not valid yet, or was signed by a key we do
    not hold yet. Every other `InvalidToken` is final for the token it was raised for."""


class InsufficientScope(BearerError):
    error = "insufficient_scope"
    status = 403


class InvalidDpopProof(BearerError):
    """RFC 9449: the DPoP proof is missing, malformed or does not fit the request.

    One definition for both sides: a resource answers 401 with a DPoP challenge (§7.1,
    `guard.challenge`), the token endpoint 400 with a JSON body (§5.4, `oauth.errors`).
    """

    error: ClassVar[str] = "invalid_dpop_proof"
    status = 401


class UseDpopNonce(BearerError):
    """RFC 9449 §8, §9: retry with the nonce in the DPoP-Nonce header (rendered as above)."""

    error: ClassVar[str] = "use_dpop_nonce"
    status = 401

    def __init__(self, description: str, nonce: str) -> None:
        super().__init__(description)
        self.nonce = nonce


class TemporarilyUnavailable(BearerError):
    """Revocation state is too stale to trust: fail closed (RFC 6749 §4.1.2.1 code)."""

    error = "temporarily_unavailable"
    status = 503


class InsufficientUserAuthentication(BearerError):
    """RFC 9470 §3: the token's authentication is too weak or too old for this request.

    `acr_values` (space-separated) and `max_age` (seconds) tell the client what to ask the
    authorization server for; the challenge carries them as auth-params."""

    error = "insufficient_user_authentication"
    status = 401

    def __init__(
        self, description: str, *, acr_values: str | None = None, max_age: int | None = None
    ) -> None:
        super().__init__(description)
        self.acr_values = acr_values
        self.max_age = max_age
