"""The validator every protected request goes through, and its RFC 6750 errors.

The public API for resource servers (README, "Protect an API"): what they need in one place,
though the token, the errors and the revocation mirror are defined in core/ and the key sources
in tokens/ (both below the guard).
"""

from tokenward.core.claims import AccessToken
from tokenward.core.errors import (
    BearerError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
)
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.guard.challenge import challenge
from tokenward.guard.remote_revocations import RemoteRevocations
from tokenward.guard.validator import Validator
from tokenward.tokens.key_sources import KeyringKeySource, KeySource, StaticKeySource
from tokenward.tokens.remote_jwks import RemoteJwks

__all__ = [
    "AccessToken",
    "BearerError",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeySource",
    "KeyringKeySource",
    "MissingToken",
    "RemoteJwks",
    "RemoteRevocations",
    "RevocationMirror",
    "StaticKeySource",
    "Validator",
    "challenge",
]
