"""The error the admin services raise for a request the operator must correct."""

from __future__ import annotations


class AdminError(ValueError):
    """A request the operator must correct; the message says how."""


class RedirectUriError(AdminError):
    """A redirect URI is refused: dynamic registration answers it as `invalid_redirect_uri`
    (RFC 7591 §3.2.2), every other refusal as `invalid_client_metadata`."""
