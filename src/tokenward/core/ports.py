"""Ports: the storage Protocols (one concern each, at most five methods; ARCHITECTURE.md,
Storage), implemented by the adapters in store/, and what the protocol core asks of the guard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenward.core.claims import AccessToken
from tokenward.core.records import (
    ClientRecord,
    CodeRecord,
    DeviceRecord,
    FamilyRecord,
    InitialAccessToken,
    MintedToken,
    PasskeyCredential,
    PushedRequest,
    RecoveryCode,
    RefreshRecord,
    Revocation,
    SessionParticipant,
    SessionRecord,
    SigningChoice,
    SsfStream,
    StoredKey,
    TotpFactor,
    UserRecord,
)


class KeyStore(Protocol):
    async def load_all(self) -> Sequence[StoredKey]: ...

    async def save(self, keys: Sequence[StoredKey]) -> None:
        """Insert or update by kid, all or nothing."""
        ...

    async def load_choices(self) -> Sequence[SigningChoice]:
        """`tokenward keys migrate`'s stored signing choices, one per audience."""
        ...

    async def save_choices(self, choices: Sequence[SigningChoice]) -> None:
        """Insert or replace by audience."""
        ...


class RevocationStore(Protocol):
    async def revoke(self, revocation: Revocation) -> int:
        """Record a revocation durably and publish it; returns its sequence number."""
        ...

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        """Revocations after `seq`, oldest first: how a mirror catches up."""
        ...

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        """Every revocation that can still match a live token: how a mirror starts."""
        ...

    async def page(
        self, after: int, now: float, limit: int
    ) -> tuple[int, Sequence[tuple[int, Revocation]]]:
        """The log's head (its highest sequence number, 0 when empty), read first, and up to
        `limit` entries with `after < seq <= head` still live at `now`, oldest first: how a
        remote follower pages from a snapshot (after=0) to the tail."""
        ...


class AccessTokenStore(Protocol):
    """Opaque access tokens by digest."""

    async def save(self, digest: str, token: AccessToken) -> None: ...

    async def get(self, digest: str) -> AccessToken | None: ...

    def get_sync(self, digest: str) -> AccessToken | None:
        """Only backends that can answer without I/O implement this; others return None."""
        ...

    async def delete(self, digest: str) -> bool: ...


class ClientStore(Protocol):
    async def get(self, client_id: str) -> ClientRecord | None: ...

    async def put(self, client: ClientRecord) -> None:
        """Insert or replace by client_id."""
        ...

    async def list_all(self) -> Sequence[ClientRecord]: ...

    async def delete(self, client_id: str) -> bool: ...


class UserStore(Protocol):
    async def get(self, user_id: str) -> UserRecord | None: ...

    async def by_username(self, username: str) -> UserRecord | None: ...

    async def put(self, user: UserRecord) -> None:
        """Insert or replace by user_id; usernames are unique (a clash raises `Conflict`)."""
        ...

    async def list_all(self) -> Sequence[UserRecord]: ...


class TotpFactors(Protocol):
    """Second factors (services/totp.py): one TOTP authenticator per user."""

    async def get(self, user_id: str) -> TotpFactor | None: ...

    async def put(self, factor: TotpFactor) -> None:
        """Insert or replace the user's authenticator."""
        ...

    async def advance(self, user_id: str, step: int) -> bool:
        """Record `step` as the last accepted one only if it is later than the stored one
        (compare-and-set): False when a code of this step was already used, so two nodes
        accepting one code at once cannot both win."""
        ...

    async def delete(self, user_id: str) -> bool: ...


class RecoveryCodes(Protocol):
    """Single-use recovery codes (services/recovery_codes.py), hashed."""

    async def replace(self, user_id: str, codes: Sequence[RecoveryCode]) -> None:
        """The user's codes become exactly these (the old ones stop working)."""
        ...

    async def of_user(self, user_id: str) -> Sequence[RecoveryCode]: ...

    async def use(self, user_id: str, code_id: str) -> bool:
        """Delete one code; False if it was already gone (used by a concurrent request)."""
        ...


class Passkeys(Protocol):
    """WebAuthn credentials (services/passkeys.py)."""

    async def add(self, credential: PasskeyCredential) -> None: ...

    async def get(self, credential_id: str) -> PasskeyCredential | None: ...

    async def of_user(self, user_id: str) -> Sequence[PasskeyCredential]: ...

    async def used(self, credential_id: str, seen: int, count: int, now: float) -> bool:
        """Store the new signature counter only if the stored one is still `seen`
        (compare-and-set); False when another sign-in with this credential came first."""
        ...

    async def delete(self, user_id: str, credential_id: str) -> bool: ...


class Conflict(Exception):
    """A unique constraint was violated (username taken, client id in use)."""


class SessionStore(Protocol):
    async def put(self, session: SessionRecord) -> None: ...

    async def get(self, session_id: str) -> SessionRecord | None: ...

    async def by_secret(self, secret_digest: str) -> SessionRecord | None: ...

    async def end(self, session_id: str, now: float) -> SessionRecord | None:
        """Mark ended (idempotent); the record, or None if unknown."""
        ...

    async def for_user(self, user_id: str) -> Sequence[SessionRecord]: ...


class SessionParticipants(Protocol):
    """Which clients took part in a session (received an ID token in it), so that ending the
    session can tell each of them (OpenID Back-Channel Logout 1.0)."""

    async def add(self, participant: SessionParticipant) -> None:
        """Insert, or extend `expires_at` of the same (session, client)."""
        ...

    async def of_session(self, session_id: str, now: float) -> Sequence[SessionParticipant]: ...

    async def of_user(self, user_id: str, now: float) -> Sequence[SessionParticipant]: ...

    async def purge(self, now: float) -> int:
        """Forget the expired; how many were."""
        ...


class SsfStreams(Protocol):
    """Shared Signals streams by id."""

    async def put(self, stream: SsfStream) -> None:
        """Insert or replace by stream_id."""
        ...

    async def get(self, stream_id: str) -> SsfStream | None: ...

    async def list_all(self) -> Sequence[SsfStream]: ...

    async def delete(self, stream_id: str) -> bool: ...


class SetQueue(Protocol):
    """SETs waiting for a stream: polled by its receiver (RFC 8936), or held for a paused push
    stream. Bounded per stream: past its capacity the oldest SET is dropped."""

    async def enqueue(self, stream_id: str, jti: str, token: str, now: float) -> None: ...

    async def pending(self, stream_id: str, limit: int) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` unacknowledged (jti, SET), oldest first, and whether more wait."""
        ...

    async def ack(self, stream_id: str, jtis: Sequence[str]) -> int:
        """Forget these SETs (acknowledged or failed); how many were queued."""
        ...

    async def clear(self, stream_id: str) -> None:
        """Forget every SET of the stream (it was deleted)."""
        ...


class CodeStore(Protocol):
    """Codes are used once. The first exchange and any replay meet on the code row, atomically,
    so whichever comes second sees the other: a replay after `redeem` reads what to revoke, and
    a `redeem` after a replay's mark refuses (the exchange then revokes what it minted)."""

    async def save(self, code: CodeRecord) -> None: ...

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        """Atomically mark used. (record, True) for the one first use; (record, False) for a
        replay, which also marks the code replayed (the first replay's time is kept) and returns
        it as marked; (None, False) if unknown. Exactly one of concurrent callers gets True."""
        ...

    async def redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        """In one transaction: record on a consumed code what its exchange minted, and create the
        grant family that starts with it (`GrantStore.create` plus `add_minted`). False, writing
        nothing, if the code is unknown, was redeemed already, or a replay has marked it."""
        ...

    async def peek(self, digest: str) -> CodeRecord | None:
        """The code as stored now, changing nothing; None if unknown. It decides nothing: only
        `consume` and `exchange` decide the single use."""
        ...

    async def exchange(
        self,
        digest: str,
        now: float,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> tuple[bool, CodeRecord | None]:
        """`consume` then `redeem`, in ONE transaction (one commit instead of two), for an
        exchange that checked the code it peeked before minting. (True, None) if this call is
        the first use: `minted` and the family are recorded. Otherwise exactly as `consume`
        for a replay, and nothing of `minted` or `grant` is written: (False, the record as
        marked replayed), or (False, None) if the code is unknown."""
        ...


class PushedRequestStore(Protocol):
    """Pushed authorization requests (RFC 9126): each taken at most once, by its client."""

    async def save(self, request: PushedRequest) -> None: ...

    async def take(self, digest: str, client_id: str, now: float) -> PushedRequest | None:
        """Atomically remove and return the request if it exists, belongs to `client_id` and
        has not expired at `now`; None otherwise (and a request of another client stays).
        Exactly one of concurrent callers gets it."""
        ...


class GrantStore(Protocol):
    async def create(self, family: FamilyRecord, first: RefreshRecord) -> None: ...

    async def rotate(
        self,
        digest: str,
        successor: RefreshRecord,
        now: float,
        grace: float,
        minted: MintedToken | None = None,
    ) -> tuple[str, FamilyRecord | None, RefreshRecord | None]:
        """Atomic rotation: (RotationOutcome, family, the presented token's record).
        Exactly one of concurrent rotations of one token gets ROTATED. `minted`: the access
        token answered with, recorded on the family (as `add_minted`) in the same transaction
        when the outcome is ROTATED or GRACE, and not at all otherwise."""
        ...

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None: ...

    async def revoke_family(self, family_id: str, now: float) -> Sequence[MintedToken]:
        """Revoke (idempotent); returns the family's access tokens that may still be live."""
        ...

    async def add_minted(self, family_id: str, token: MintedToken) -> None: ...


class TokenLineage(Protocol):
    """Which grant family an access token descends from, so a token exchanged from it (RFC 8693)
    dies with that family. Implemented by the grant store's adapters, over its minted tokens."""

    async def family_of(self, jti: str) -> str | None:
        """The family that minted (or, by exchange, inherited) this token; None if none did."""
        ...

    async def link(self, family_id: str, token: MintedToken) -> bool:
        """Record the token on the family (as `GrantStore.add_minted`) unless the family is
        revoked or gone: False then, nothing written. Serialised with `revoke_family`, so a
        revocation either sees the token or is seen here."""
        ...


class DeviceStore(Protocol):
    async def save(self, record: DeviceRecord) -> None: ...

    async def by_user_code(self, user_code: str) -> DeviceRecord | None: ...

    async def decide(
        self,
        user_code: str,
        approved: bool,
        user_id: str,
        session_id: str,
        auth_time: float,
        now: float,
        *,
        acr: str | None,
    ) -> bool:
        """Approve or deny a pending, unexpired request, recording the deciding session, its
        sign-in time and level (`acr`); False if it was not pending."""
        ...

    async def poll(self, device_digest: str, now: float) -> tuple[DeviceRecord | None, bool]:
        """Record a poll atomically: (record as it was, too_fast). An approved record becomes
        consumed in the same step, so only one poll redeems it; otherwise a poll sooner than
        `interval` after the last one adds 5 s to the interval (RFC 8628 §3.5) and is too fast."""
        ...


class ConsentStore(Protocol):
    async def granted(self, user_id: str, client_id: str) -> frozenset[str]: ...

    async def grant(self, user_id: str, client_id: str, scopes: frozenset[str]) -> None:
        """Add to what the user granted this client."""
        ...

    async def withdraw(self, user_id: str, client_id: str) -> None: ...


class AlertClaims(Protocol):
    """Shared across servers: the first to claim (detector, key) raises the alert."""

    async def claim(self, detector: str, key: str, seconds: float) -> bool: ...


class TokenVerifier(Protocol):
    """An access token checked as our own introspection and revocation endpoints need it: the
    guard's `Validator` satisfies this, so the protocol core does not import the guard."""

    async def inspect(self, raw: str) -> AccessToken:
        """The verified token, or a `core.errors.BearerError` saying why not."""
        ...


class InitialAccessTokens(Protocol):
    """Initial access tokens of dynamic client registration (RFC 7591 §3), by keyed digest."""

    async def save(self, token: InitialAccessToken) -> None: ...

    async def find(self, digest: str, now: float) -> InitialAccessToken | None:
        """The token with this digest if it is usable at `now` (not revoked, expired or used
        up); nothing is counted."""
        ...

    async def spend(self, digest: str, now: float) -> InitialAccessToken | None:
        """Atomically count one use of the token with this digest if it is not revoked, not
        expired at `now` and not used up; the token as it was before, or None (nothing
        counted). Of concurrent callers at most `max_uses - uses` succeed."""
        ...

    async def revoke(self, token_id: str) -> bool:
        """True when a token of this id existed (revoked now, or already)."""
        ...

    async def list_all(self) -> Sequence[InitialAccessToken]: ...


class RegistrationAccessTokens(Protocol):
    """RFC 7592 registration access tokens: one per dynamically registered client, by digest."""

    async def put(self, client_id: str, digest: str) -> None:
        """Set (or replace: a rotation) the client's token digest."""
        ...

    async def add_open(self, client_id: str, digest: str, limit: int) -> bool:
        """The first token of a client registered openly (no initial access token), stored
        only while fewer than `limit` such clients exist; False (nothing stored) at the cap.
        Atomic across the deployment's nodes: of concurrent callers, the database lets at
        most the free places through. `delete` frees a place."""
        ...

    async def get(self, client_id: str) -> str | None: ...

    async def delete(self, client_id: str) -> bool: ...
