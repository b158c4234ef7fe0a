"""Errors raised in one layer and handled in another."""

from __future__ import annotations


class JoseError(ValueError):
    """A token, key or key set is malformed or fails a check. Messages never hold key material.

    The base of `tokens.errors` (raised by the JOSE layer) and of `core.claims.ClaimError`.
    """
