"""Errors raised by the JOSE layer. The guard maps every one of them to `invalid_token`.

Their base, `JoseError`, is in `tokenward.core.errors`: `core.claims` raises it too.
"""

from __future__ import annotations

from tokenward.core.errors import JoseError


class KeyRejected(JoseError):
    """A key is unusable: weak, inconsistent with its algorithm, or not a signing key."""


class KeySetRejected(JoseError):
    """A key set as a whole is unsafe: duplicate `kid`, or symmetric and asymmetric keys mixed."""


class NoSigningKey(LookupError):
    """An algorithm a client or an audience is pinned to has no active key here. Signing with
    another algorithm instead would hand out a token its relying party was told it would never
    see (a PQC-only API getting ES256), so nothing is signed: the caller refuses the request."""

    def __init__(self, alg: str) -> None:
        super().__init__(f"no active {alg[:20]} signing key")
        self.alg = alg


class MasterKeyError(RuntimeError):
    """The master key that seals private keys at rest is missing, malformed or wrong."""
