"""Second factors in memory (one process; tests and `--memory` demos). Each method runs without
an await in between its read and its write, so on one event loop it is atomic."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tokenward.core.records import PasskeyCredential, RecoveryCode, TotpFactor


class MemoryTotpFactors:
    def __init__(self) -> None:
        self._factors: dict[str, TotpFactor] = {}

    async def get(self, user_id: str) -> TotpFactor | None:
        return self._factors.get(user_id)

    async def put(self, factor: TotpFactor) -> None:
        self._factors[factor.user_id] = factor

    async def advance(self, user_id: str, step: int) -> bool:
        factor = self._factors.get(user_id)
        if factor is None or step <= factor.last_step:
            return False
        self._factors[user_id] = dataclasses.replace(factor, last_step=step)
        return True

    async def delete(self, user_id: str) -> bool:
        return self._factors.pop(user_id, None) is not None


class MemoryRecoveryCodes:
    def __init__(self) -> None:
        self._codes: dict[str, dict[str, RecoveryCode]] = {}

    async def replace(self, user_id: str, codes: Sequence[RecoveryCode]) -> None:
        self._codes[user_id] = {code.code_id: code for code in codes}

    async def of_user(self, user_id: str) -> Sequence[RecoveryCode]:
        return list(self._codes.get(user_id, {}).values())

    async def use(self, user_id: str, code_id: str) -> bool:
        return self._codes.get(user_id, {}).pop(code_id, None) is not None


class MemoryPasskeys:
    def __init__(self) -> None:
        self._credentials: dict[str, PasskeyCredential] = {}

    async def add(self, credential: PasskeyCredential) -> None:
        self._credentials[credential.credential_id] = credential

    async def get(self, credential_id: str) -> PasskeyCredential | None:
        return self._credentials.get(credential_id)

    async def of_user(self, user_id: str) -> Sequence[PasskeyCredential]:
        found = [c for c in self._credentials.values() if c.user_id == user_id]
        return sorted(found, key=lambda credential: credential.created_at)

    async def used(self, credential_id: str, seen: int, count: int, now: float) -> bool:
        credential = self._credentials.get(credential_id)
        if credential is None or credential.sign_count != seen:
            return False
        self._credentials[credential_id] = dataclasses.replace(
            credential, sign_count=count, last_used_at=now
        )
        return True

    async def delete(self, user_id: str, credential_id: str) -> bool:
        credential = self._credentials.get(credential_id)
        if credential is None or credential.user_id != user_id:
            return False
        del self._credentials[credential_id]
        return True
