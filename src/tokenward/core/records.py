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


@dataclass(frozen=True, slots=True)
class SigningChoice:
    """`tokenward keys migrate`: from `switch_at` on, access tokens for `audience` ("" for the
    deployment's default) are signed with `alg`; until then with `previous` (None: as the
    settings say). Stored, so every node switches at the same moment without a restart."""

    audience: str
    alg: str
    previous: str | None
    switch_at: float


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


APPROVED, PENDING, REJECTED = "approved", "pending", "rejected"


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client. The secret is kept only as a keyed digest."""

    client_id: str
    auth_method: str  # client_secret_basic | _post | private_key_jwt | *tls_client_auth | none
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
    jwks_uri: str | None = None  # or where the client publishes it (fetched, cached)
    id_token_alg: str = "RS256"  # id_token_signed_response_alg (OIDC Registration §2)
    access_token_alg: str | None = None  # None: the audience's, else the deployment's algorithm
    name: str = ""
    # Token exchange (RFC 8693): the audiences this client may exchange tokens for (none: it
    # may not exchange), and whether it may impersonate (else every exchange is a delegation).
    exchange_audiences: tuple[str, ...] = ()
    exchange_impersonation: bool = False
    # mTLS (RFC 8705 §2.1.2): for tls_client_auth, the one certificate field the client's
    # certificate must carry (subject DN in RFC 4514 form, or one SAN); and whether access
    # tokens are bound to the certificate it presents (§3.4).
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    tls_client_certificate_bound_access_tokens: bool = False
    # OpenID Back-Channel Logout 1.0: where a logout token is POSTed when a session the client
    # took part in ends, and whether the client needs `sid` in it (we always send it if known).
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    # RFC 9126 §6 and RFC 9101 §10.5: authorization requests only pushed (PAR), only signed (JAR).
    require_pushed_authorization_requests: bool = False
    require_signed_request_object: bool = False
    # The security profile the client is held to (oauth/profiles.py): baseline | fapi2.
    profile: str = "baseline"
    # The weakest authentication this client accepts (core/assurance.py LEVELS); None: any.
    min_acr: str | None = None
    # The developer portal (docs/portal.md): the user who registered the client there, and
    # whether an operator approved it. Only an approved client gets tokens (fail closed).
    owner: str | None = None
    approval: str = "approved"  # APPROVED | PENDING | REJECTED

    @property
    def active(self) -> bool:
        """May this client take part in any flow: not disabled, and approved."""
        return not self.disabled and self.approval == APPROVED


@dataclass(frozen=True, slots=True)
class SessionParticipant:
    """A client that received an ID token in a browser session: who a back-channel logout
    notifies when that session (or every session of the user) ends."""

    session_id: str
    user_id: str
    client_id: str
    expires_at: float  # forgotten afterwards (the client's longest token has expired)


@dataclass(frozen=True, slots=True)
class SsfStream:
    """A Shared Signals stream (SSF 1.0 §8.1.1): which events a receiver (`owner`, a client)
    wants about which subjects, and how they reach it. `subjects` are RFC 9493 subject
    identifiers as canonical JSON text; only events about them are sent (default_subjects NONE).
    """

    stream_id: str
    owner: str  # the client that created it (the management token's client_id)
    audience: str  # the SETs' `aud`
    events_requested: tuple[str, ...]
    delivery_method: str  # urn:ietf:rfc:8935 (push) or urn:ietf:rfc:8936 (poll)
    endpoint_url: str  # push: the receiver's; poll: ours
    created_at: float
    authorization_header: str | None = None  # push: sent as Authorization (SSF §8.1.1.1)
    description: str = ""
    status: str = "enabled"  # enabled | paused | disabled
    reason: str = ""
    subjects: tuple[str, ...] = ()
    verified_at: float | None = None  # the last verification event asked for (rate limit)


@dataclass(frozen=True, slots=True)
class PushedRequest:
    """A pushed authorization request (RFC 9126), stored by the digest of its request_uri's
    random part, usable once, by its client, until `expires_at`. `params` is the validated
    request as JSON `[[name, value], ...]`; `signed`: it came as a verified request object."""

    digest: str
    client_id: str
    params: str
    expires_at: float
    signed: bool = False


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    username: str
    password_hash: str  # argon2id, PHC string format
    created_at: float
    password_changed_at: float
    disabled: bool = False
    claims: str = "{}"  # JSON object of OIDC profile claims (name, email, ...)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser login. `session_id` is public (the `sid` claim); the cookie holds a separate
    256-bit secret, stored only as `secret_digest`."""

    session_id: str
    secret_digest: str
    user_id: str
    auth_time: float
    expires_at: float
    acr: str | None = None
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An authorization code (stored by digest), bound to everything the exchange must match."""

    digest: str
    client_id: str
    redirect_uri: str
    code_challenge: str  # S256 only
    scopes: frozenset[str]
    audience: tuple[str, ...]
    user_id: str
    session_id: str
    auth_time: float
    expires_at: float
    nonce: str | None = None
    acr: str | None = None
    dpop_jkt: str | None = None
    redirect_uri_given: bool = True  # RFC 6749 §4.1.3: then the exchange must repeat it
    consumed_at: float | None = None
    # What the first exchange minted, so a replay can revoke it (RFC 6749 §4.1.2).
    family_id: str | None = None
    access_jti: str | None = None
    access_exp: float | None = None
    # When a second exchange came: from then on the first may no longer record what it minted.
    replayed_at: float | None = None


@dataclass(frozen=True, slots=True)
class FamilyRecord:
    """A grant family: every refresh token descended from one authorization."""

    family_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    created_at: float
    expires_at: float  # absolute end of the family, however often it rotates
    session_id: str | None = None
    auth_time: float | None = None
    acr: str | None = None
    dpop_jkt: str | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    digest: str
    family_id: str
    created_at: float
    expires_at: float
    rotated_at: float | None = None
    successor_digest: str | None = None


class RotationOutcome:
    ROTATED = "rotated"  # the successor is stored and current
    GRACE = "grace"  # a repeat of the immediate predecessor within the grace: same successor
    REUSED = "reused"  # a rotated token came back: the family is revoked now
    INVALID = "invalid"  # unknown, expired, or its family is revoked
    # The outcomes answered with tokens: what the rotation minted is recorded on the family.
    DELIVERED = frozenset({ROTATED, GRACE})


@dataclass(frozen=True, slots=True)
class MintedToken:
    """An access token a family or code minted: what revocation on reuse must deny."""

    jti: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """An RFC 8628 device authorization, stored by the device code's digest."""

    device_digest: str
    user_code: str  # normalised: upper case, no separator
    client_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    created_at: float
    expires_at: float
    interval: int
    status: str = "pending"  # pending | approved | denied | consumed
    last_poll_at: float | None = None
    user_id: str | None = None
    session_id: str | None = None
    auth_time: float | None = None
    acr: str | None = None  # the approving sign-in's level (core/assurance.py)
    acr_values: str | None = None  # the levels the device asked for (docs/second-factors.md)


@dataclass(frozen=True, slots=True)
class InitialAccessToken:
    """An initial access token for dynamic client registration (RFC 7591 §3): kept as a keyed
    digest only, usable until `expires_at`, at most `max_uses` times (None: no count), unless
    revoked."""

    token_id: str  # public name for listing and revoking; not the token
    digest: str
    created_at: float
    expires_at: float
    max_uses: int | None = None
    uses: int = 0
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class TotpFactor:
    """A user's confirmed TOTP authenticator (RFC 6238). The shared secret is kept sealed under
    the master key; `last_step` is the time step of the last code accepted, so no code of that
    step or an earlier one is accepted again (RFC 6238 §5.2)."""

    user_id: str
    sealed_secret: bytes
    created_at: float
    last_step: int = 0


@dataclass(frozen=True, slots=True)
class RecoveryCode:
    """One single-use recovery code, kept only as a keyed digest."""

    user_id: str
    code_id: str
    code_hash: str
    created_at: float


@dataclass(frozen=True, slots=True)
class PasskeyCredential:
    """A WebAuthn credential (a passkey): `credential_id` base64url, its COSE public key, and the
    authenticator's signature counter as last seen (a counter that does not grow is a clone)."""

    credential_id: str
    user_id: str
    public_key: bytes
    sign_count: int
    created_at: float
    name: str = ""
    last_used_at: float | None = None
