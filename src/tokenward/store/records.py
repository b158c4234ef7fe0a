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


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client. The secret is kept only as a keyed digest."""

    client_id: str
    auth_method: str  # client_secret_basic | client_secret_post | private_key_jwt | none
    grant_types: tuple[str, ...]
    scopes: frozenset[str]  # the most this client may ask for
    created_at: float
    secret_digest: str | None = None
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()  # default resource when the request names none
    token_format: str = "jwt"
    access_token_lifetime: int = 900
    refresh_token_lifetime: int = 30 * 86400
    skip_consent: bool = False
    dpop_required: bool = False
    disabled: bool = False
    jwks: str | None = None  # JSON JWKS text for private_key_jwt
    id_token_alg: str = "RS256"
    name: str = ""


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    username: str
    password_hash: str  # argon2id, PHC string format
    created_at: float
    password_changed_at: float
    disabled: bool = False
    claims: str = "{}"  # JSON object of OIDC profile claims (name, email, ...)
