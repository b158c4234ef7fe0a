"""Plain records that cross the storage boundary. No behaviour, no driver imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredKey:
    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None
    retiring_at: float | None
    retired_at: float | None
    sealed_private: bytes


class RevocationKind:
    """What a revocation names. Watermarks revoke every token issued before `issued_before`."""

    JTI = "jti"
    SUBJECT = "sub"
    SESSION = "sid"
    CLIENT = "client_id"
    ALL = (JTI, SUBJECT, SESSION, CLIENT)


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str  # one of RevocationKind.ALL
    value: str
    # For watermarks: tokens with iat < issued_before are revoked. None for a single jti.
    issued_before: float | None
    # When the entry may be forgotten: every token it could match has expired by then.
    expires_at: float
