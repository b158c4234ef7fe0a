"""The second-factor services the sign-in pages, the account page, the console and the admin
API share, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from tokenward.services.factors import FactorCatalogue
from tokenward.services.passkeys import PasskeyService
from tokenward.services.recovery_codes import RecoveryCodeService
from tokenward.services.totp import TotpService


@dataclass(frozen=True, slots=True)
class SecondFactors:
    catalogue: FactorCatalogue
    totp: TotpService
    recovery: RecoveryCodeService
    passkeys: PasskeyService
