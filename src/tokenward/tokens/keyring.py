"""Signing keys and their life: next → active → retiring → retired (ARCHITECTURE.md, Token model).

`next` is published in the JWKS before it signs, so caches learn it ahead of time; `retiring`
verifies until the longest-lived token it may have signed has expired; `retired` is gone from the
JWKS and verifies nothing. Each key is pinned to one algorithm for its whole life.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokenward.core.records import StoredKey
from tokenward.tokens import algorithms as algs
from tokenward.tokens.jwk import VerificationKey, ml_dsa_private_key, public_jwk, thumbprint
from tokenward.tokens.sealing import KeySealer

Clock = Callable[[], float]


class KeyState(enum.StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


class KeyRotationError(RuntimeError):
    """A rotation would break the overlap rules; the message says which and how to force it."""


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    algorithm: str = "ES256"
    rotation_period: float = 30 * 86400.0
    publish_ahead: float = 3600.0  # ≥ the JWKS max-age we serve, so caches see `next` first
    max_token_lifetime: float = 3600.0  # longest token any key signs (access and ID tokens)
    leeway: float = 60.0
    rsa_bits: int = 2048


@dataclass(slots=True, eq=False)
class ManagedKey:
    kid: str
    alg: algs.Algorithm
    private: algs.PrivateKey = field(repr=False)
    state: KeyState
    created_at: float
    activated_at: float | None = None
    retiring_at: float | None = None
    retired_at: float | None = None
    verification: VerificationKey = field(init=False, repr=False)
    sign: algs.Sign = field(init=False, repr=False)

    def __post_init__(self) -> None:
        public = self.private if isinstance(self.private, bytes) else self.private.public_key()
        jwk = None if self.alg.symmetric else public_jwk(public, self.kid, self.alg.name)
        self.verification = VerificationKey(
            self.kid, self.alg, algs.verifier(self.alg, public), jwk
        )
        self.sign = algs.signer(self.alg, self.private)


def generate_private_key(alg: algs.Algorithm, rsa_bits: int = 2048) -> algs.PrivateKey:
    if alg.family == "ecdsa":
        return ec.generate_private_key(algs.curve(alg).factory())
    if alg.family in ("pkcs1", "pss"):
        return rsa.generate_private_key(public_exponent=65537, key_size=max(rsa_bits, 2048))
    if alg.family == "eddsa":
        return ed25519.Ed25519PrivateKey.generate()
    if alg.family == "mldsa":
        return algs.ml_dsa(alg).private_class.generate()
    return secrets.token_bytes(max(alg.hash_bytes, 32))


def new_key(alg: algs.Algorithm, state: KeyState, now: float, rsa_bits: int = 2048) -> ManagedKey:
    private = generate_private_key(alg, rsa_bits)
    # Asymmetric kids are RFC 7638 thumbprints; a secret's thumbprint would publish its hash.
    kid = (
        secrets.token_urlsafe(16)
        if isinstance(private, bytes)
        else thumbprint(private.public_key())
    )
    return ManagedKey(
        kid, alg, private, state, now, activated_at=now if state == KeyState.ACTIVE else None
    )


class Keyring:
    """The keys one issuer signs and verifies with. Mutations return the keys they changed."""

    def __init__(self, policy: KeyPolicy, clock: Clock, keys: Iterable[ManagedKey] = ()) -> None:
        self.policy = policy
        self._clock = clock
        self._keys: dict[str, ManagedKey] = {key.kid: key for key in keys}
        self._verifiers: dict[str | None, VerificationKey] = {}
        self._active: ManagedKey | None = None  # kept by _reindex: every request signs or asks
        self._reindex()

    # --- reading -------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self._clock

    def managed_keys(self) -> list[ManagedKey]:
        return sorted(self._keys.values(), key=lambda key: key.created_at)

    def active(self) -> ManagedKey:
        if self._active is None:
            raise KeyRotationError("the keyring has no active key; run `tokenward keys rotate`")
        return self._active

    def verification_key(self, kid: str | None) -> VerificationKey | None:
        """Keys that may have signed a live token (active, retiring) and `next`, by kid."""
        return self._verifiers.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Public keys of every key a live token may carry, plus the next one; never secrets."""
        published = [
            dict(key.verification.public_jwk)
            for key in self.managed_keys()
            if key.state != KeyState.RETIRED and key.verification.public_jwk is not None
        ]
        return {"keys": published}

    # --- changing ------------------------------------------------------------------------
    def ensure_ready(self) -> list[ManagedKey]:
        """First start: create the active key and the next one."""
        now = self._clock()
        changed = []
        if not any(key.state == KeyState.ACTIVE for key in self._keys.values()):
            changed.append(
                self._add(new_key(self._algorithm(), KeyState.ACTIVE, now, self.policy.rsa_bits))
            )
        if not any(key.state == KeyState.NEXT for key in self._keys.values()):
            changed.append(
                self._add(new_key(self._algorithm(), KeyState.NEXT, now, self.policy.rsa_bits))
            )
        return changed + self.advance()

    def rotate(self, *, force: bool = False) -> list[ManagedKey]:
        """Promote `next` to active, move active to retiring and publish a new `next`.

        `next` may sign once every cached JWKS can know it: it has been published for
        `publish_ahead`, or the keyring never rotated and `next` is as old as its active key
        (created together, so no JWKS without it was ever served: a fresh install rotates at
        once). `force` skips the wait; the old active key still verifies as retiring, and
        validators refetch the JWKS on an unknown kid, so only a validator that cannot refetch
        would refuse new tokens."""
        now = self._clock()
        changed = self.ensure_ready()
        upcoming = next(key for key in self._keys.values() if key.state == KeyState.NEXT)
        ready_at = upcoming.created_at + self.policy.publish_ahead
        never_rotated = all(
            key.state in (KeyState.ACTIVE, KeyState.NEXT) and key.created_at >= upcoming.created_at
            for key in self._keys.values()
        )
        if now < ready_at and not never_rotated and not force:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ready_at))
            raise KeyRotationError(
                f"key {upcoming.kid} has been published for {now - upcoming.created_at:.0f}s; "
                f"caches may not know it until {self.policy.publish_ahead:.0f}s have passed "
                f"({when}). Rotate then, or use --force (the current key keeps verifying, and "
                "validators refetch the JWKS on an unknown kid)"
            )
        current = self.active()
        current.state, current.retiring_at = KeyState.RETIRING, now
        upcoming.state, upcoming.activated_at = KeyState.ACTIVE, now
        fresh = new_key(self._algorithm(), KeyState.NEXT, now, self.policy.rsa_bits)
        self._add(fresh)
        return [*changed, current, upcoming, fresh]

    def retire(self) -> list[ManagedKey]:
        """Nothing signs with this algorithm any more (`tokenward keys migrate`): the active key
        verifies on as retiring until every token it signed has expired; `next` never signed,
        so it goes at once."""
        now = self._clock()
        changed = []
        for key in self._keys.values():
            if key.state == KeyState.ACTIVE:
                key.state, key.retiring_at = KeyState.RETIRING, now
                changed.append(key)
            elif key.state == KeyState.NEXT:
                key.state, key.retired_at = KeyState.RETIRED, now
                changed.append(key)
        if changed:
            self._reindex()
        return changed

    def has_active(self) -> bool:
        return self._active is not None

    def rotation_due(self) -> bool:
        if not self.has_active():
            return False
        activated = self.active().activated_at or 0.0
        return self._clock() >= activated + self.policy.rotation_period

    def advance(self) -> list[ManagedKey]:
        """Retire keys whose every signed token has expired."""
        now = self._clock()
        grace = self.policy.max_token_lifetime + self.policy.leeway
        changed = []
        for key in self._keys.values():
            if key.state == KeyState.RETIRING and (key.retiring_at or 0.0) + grace <= now:
                key.state, key.retired_at = KeyState.RETIRED, now
                changed.append(key)
        if changed:
            self._reindex()
        return changed

    def merge(self, stored: Iterable[ManagedKey]) -> None:
        """Take in keys and states another node wrote (scale-out: one keyring, many nodes)."""
        for key in stored:
            if key.alg.name != self.policy.algorithm:
                continue
            mine = self._keys.get(key.kid)
            if mine is None:
                self._keys[key.kid] = key
            else:
                mine.state, mine.activated_at = key.state, key.activated_at
                mine.retiring_at, mine.retired_at = key.retiring_at, key.retired_at
        self._reindex()

    def _algorithm(self) -> algs.Algorithm:
        return algs.algorithm(self.policy.algorithm)

    def _add(self, key: ManagedKey) -> ManagedKey:
        self._keys[key.kid] = key
        self._reindex()
        return key

    def _reindex(self) -> None:
        live = [key for key in self._keys.values() if key.state != KeyState.RETIRED]
        self._verifiers = {key.kid: key.verification for key in live}
        self._active = next((key for key in live if key.state == KeyState.ACTIVE), None)


# --- persistence --------------------------------------------------------------------------
def seal_key(key: ManagedKey, sealer: KeySealer) -> StoredKey:
    if isinstance(key.private, bytes):
        material = key.private
    elif key.alg.family == "mldsa" and isinstance(key.private, algs.MlDsaPrivateKey):
        material = key.private.private_bytes_raw()  # the 32-byte seed: all RFC 9964 keeps
    else:
        material = key.private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return StoredKey(
        kid=key.kid,
        alg=key.alg.name,
        state=key.state.value,
        created_at=key.created_at,
        activated_at=key.activated_at,
        retiring_at=key.retiring_at,
        retired_at=key.retired_at,
        sealed_private=sealer.seal(material, f"{key.kid}/{key.alg.name}"),
    )


def open_key(stored: StoredKey, sealer: KeySealer) -> ManagedKey:
    alg = algs.algorithm(stored.alg)
    material = sealer.open(stored.sealed_private, f"{stored.kid}/{stored.alg}")
    private: algs.PrivateKey
    if alg.symmetric:
        private = material
    elif alg.family == "mldsa":
        private = ml_dsa_private_key(alg, material)
    else:
        loaded = serialization.load_der_private_key(material, password=None)
        if not isinstance(
            loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise KeyRotationError(f"stored key {stored.kid} has an unsupported type")
        private = loaded
    return ManagedKey(
        stored.kid,
        alg,
        private,
        KeyState(stored.state),
        stored.created_at,
        stored.activated_at,
        stored.retiring_at,
        stored.retired_at,
    )
