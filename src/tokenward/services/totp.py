"""TOTP second factor (RFC 6238, 30-second steps, six digits, SHA-1 as every authenticator app
implements it). The secret is sealed under the master key at rest. A code is good once: the
step it matched is recorded with a compare-and-set, and a code of that step or an earlier one
is refused, on every node. Wrong codes count against the sign-in throttle like wrong passwords.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

import pyotp
import segno
import structlog

from tokenward.core.ports import TotpFactors
from tokenward.core.records import TotpFactor
from tokenward.core.throttle import SignInThrottle
from tokenward.tokens.errors import MasterKeyError
from tokenward.tokens.sealing import KeySealer

log = structlog.get_logger(__name__)

_CONTEXT = "totp-secret:"  # + the user id: a sealed secret opens for its user only
_WINDOW = 1  # one step either side: clocks drift and people type slowly
_PERIOD = 30
UNUSABLE = (
    "Your authenticator app cannot be used to sign in right now. Use a recovery code instead "
    "(in the same field), or ask an administrator to reset your second factors."
)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the account page shows to set up an authenticator."""

    secret: str  # base32, for typing in by hand
    uri: str  # otpauth:// (the QR code's content)
    qr: str  # the QR code as a data: URI (SVG), shown inline


class _Unusable:
    """The stored secret could not be opened."""


_UNUSABLE = _Unusable()


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    error: str | None = None
    status: int = 200


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step within the window whose code this is (compared in constant time)."""
    totp = pyotp.TOTP(secret, interval=_PERIOD)
    typed = "".join(code.split())[:16]
    current = int(now // _PERIOD)
    found = None
    for step in range(current - _WINDOW, current + _WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), typed.encode()):
            found = step
    return found


class TotpService:
    def __init__(
        self,
        factors: TotpFactors,
        sealer: KeySealer,
        throttle: SignInThrottle,
        clock: Callable[[], float],
        issuer_name: str = "tokenward",
    ) -> None:
        self._factors = factors
        self._sealer = sealer
        self._throttle = throttle
        self._clock = clock
        self._issuer_name = issuer_name

    def start(self, username: str) -> Enrolment:
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret, interval=_PERIOD).provisioning_uri(
            name=username, issuer_name=self._issuer_name
        )
        qr = segno.make(uri, error="m").svg_data_uri(scale=4)
        return Enrolment(secret, uri, qr)

    async def confirm(self, user_id: str, secret: str, code: str) -> bool:
        """Store the authenticator once the user shows it works (a code of the new secret)."""
        try:
            step = _matching_step(secret, code, self._clock())
        except (ValueError, TypeError):  # not base32
            return False
        if step is None:
            return False
        sealed = self._sealer.seal(secret.encode("ascii"), _CONTEXT + user_id)
        # The confirming code is used up like any other.
        await self._factors.put(TotpFactor(user_id, sealed, self._clock(), last_step=step))
        return True

    async def enrolled(self, user_id: str) -> bool:
        return await self._factors.get(user_id) is not None

    async def verify(self, user_id: str, username: str, code: str, ip: str) -> Check:
        """Throttled per (username, IP), IP and username, in the password sign-in's counters."""
        attempt = await self._throttle.attempt(f"totp:{username}", ip)
        if attempt.wait is not None:
            return Check(False, f"Too many wrong codes. Try again in {attempt.wait} seconds.", 429)
        factor = await self._factors.get(user_id)
        if factor is None:
            return Check(False, "No authenticator is set up for this account.", 400)
        step = self._step_of(factor, code)
        if isinstance(step, _Unusable):  # fail closed: nothing is accepted, no 500
            return Check(False, UNUSABLE, 409)
        if step is None:
            return Check(False, "That code is not right.", 401)
        if not await self._factors.advance(user_id, step):
            return Check(False, "That code was already used. Wait for the next one.", 401)
        await self._throttle.succeeded(attempt)
        return Check(True)

    def _step_of(self, factor: TotpFactor, code: str) -> int | _Unusable | None:
        """The code's step, or _UNUSABLE when the stored secret does not open (the row was
        altered, or the master key changed): logged with the user and the error's type only,
        no traceback (its frames hold the secret)."""
        try:
            secret = self._sealer.open(factor.sealed_secret, _CONTEXT + factor.user_id)
            return _matching_step(secret.decode("ascii"), code, self._clock())
        except (MasterKeyError, ValueError, TypeError) as exc:  # ValueError: not base32/ascii
            reason = type(exc).__name__
        log.error("totp_secret_unusable", user_id=factor.user_id, reason=reason)
        return _UNUSABLE

    async def remove(self, user_id: str) -> bool:
        return await self._factors.delete(user_id)
