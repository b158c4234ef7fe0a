"""Which second factors a user has, for the sign-in flow (what to ask for), the account page
and the console (what to show), and the operator's reset (remove them all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenward.core.assurance import PASSKEY, TOTP
from tokenward.core.ports import Passkeys, RecoveryCodes, TotpFactors


@dataclass(frozen=True, slots=True)
class FactorSummary:
    totp: bool
    recovery_codes: int  # how many are left
    passkeys: tuple[dict[str, Any], ...]  # id, name, created_at, last_used_at

    def as_dict(self) -> dict[str, object]:
        return {
            "totp": self.totp,
            "recovery_codes_left": self.recovery_codes,
            "passkeys": list(self.passkeys),
        }


class FactorCatalogue:
    def __init__(self, totp: TotpFactors, codes: RecoveryCodes, passkeys: Passkeys) -> None:
        self._totp = totp
        self._codes = codes
        self._passkeys = passkeys

    async def methods(self, user_id: str) -> frozenset[str]:
        """The second factors the user can sign in with (flow.FactorMethods)."""
        found = set()
        if await self._totp.get(user_id) is not None:
            found.add(TOTP)
        if await self._passkeys.of_user(user_id):
            found.add(PASSKEY)
        return frozenset(found)

    async def summary(self, user_id: str) -> FactorSummary:
        passkeys = tuple(
            {
                "id": credential.credential_id,
                "name": credential.name,
                "created_at": credential.created_at,
                "last_used_at": credential.last_used_at,
            }
            for credential in await self._passkeys.of_user(user_id)
        )
        return FactorSummary(
            totp=await self._totp.get(user_id) is not None,
            recovery_codes=len(await self._codes.of_user(user_id)),
            passkeys=passkeys,
        )

    async def reset(self, user_id: str) -> int:
        """Remove every factor (the operator's answer to a lost device); how many were removed."""
        removed = int(await self._totp.delete(user_id))
        await self._codes.replace(user_id, [])
        for credential in await self._passkeys.of_user(user_id):
            removed += int(await self._passkeys.delete(user_id, credential.credential_id))
        return removed
