"""RFC 6749 §5.2 error responses, one class per registered code, each with its HTTP status.

Rendered once, at the edge (server/). Descriptions are our own fixed phrases: no secrets, no
tokens, nothing echoed from the request beyond a parameter name.
"""

from __future__ import annotations

from typing import ClassVar

from tokenward.core.errors import InvalidDpopProof, UseDpopNonce


class OAuthError(Exception):
    error: str = "invalid_request"  # a class's code; DpopProofRefused sets its refusal's
    status: ClassVar[int] = 400

    def __init__(self, description: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        payload = {"error": self.error}
        if self.description:
            payload["error_description"] = self.description
        return payload


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the requested resource is unknown or not allowed."""

    error = "invalid_target"


class AccessDenied(OAuthError):
    error = "access_denied"
    status = 400  # RFC 6749 §5.2 (device grant) and a redirect parameter elsewhere


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidRequestObject(OAuthError):
    """RFC 9101 §6.3: the request object is invalid (signature, claims, key, replay)."""

    error = "invalid_request_object"


class InvalidRequestUri(OAuthError):
    """RFC 9101 §6.3, RFC 9126 §4: the request_uri is unknown, used, expired or not yours."""

    error = "invalid_request_uri"


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1."""

    error = "unsupported_token_type"


class AuthorizationPending(OAuthError):
    """RFC 8628 §3.5."""

    error = "authorization_pending"


class SlowDown(OAuthError):
    error = "slow_down"


class ExpiredToken(OAuthError):
    error = "expired_token"


class LoginRequired(OAuthError):
    """OIDC Core §3.1.2.6."""

    error = "login_required"


class ConsentRequired(OAuthError):
    error = "consent_required"


class InteractionRequired(OAuthError):
    error = "interaction_required"


class TooManyRequests(OAuthError):
    """Throttled (login brute force, rate limits); rendered as 429 with Retry-After."""

    error = "slow_down"
    status = 429


class ServerError(OAuthError):
    error = "server_error"
    status = 500


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503


class DpopProofRefused(OAuthError):
    """A DPoP refusal (`core.errors.InvalidDpopProof` or `UseDpopNonce`, defined once for the
    token endpoint and the resources) as the token endpoint answers it: 400 with the refusal's
    code in the body (RFC 9449 §5.4), and its nonce in DPoP-Nonce (§8)."""

    def __init__(self, refusal: InvalidDpopProof | UseDpopNonce) -> None:
        nonce = refusal.nonce if isinstance(refusal, UseDpopNonce) else None
        super().__init__(
            refusal.description, headers={"dpop-nonce": nonce} if nonce is not None else None
        )
        self.error = refusal.error


class InvalidRedirectUri(OAuthError):
    """RFC 7591 §3.2.2: a redirect URI is refused."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """RFC 7591 §3.2.2: a metadata field is invalid or contradicts another."""

    error = "invalid_client_metadata"


class InvalidSoftwareStatement(OAuthError):
    """RFC 7591 §3.2.2: the software statement is malformed, unverifiable or expired."""

    error = "invalid_software_statement"


class UnapprovedSoftwareStatement(OAuthError):
    """RFC 7591 §3.2.2: the software statement's issuer is not one this server accepts."""

    error = "unapproved_software_statement"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1 at RFC 7592's client configuration endpoint (and RFC 7591's initial
    access token): 401 with a Bearer challenge. Descriptions are fixed phrases."""

    error = "invalid_token"
    status = 401

    def __init__(self, description: str = "") -> None:
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
        super().__init__(description, headers={"WWW-Authenticate": challenge})
