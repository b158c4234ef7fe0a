"""Recovery codes: ten single-use codes shown once at enrolment, for a user who lost their
authenticator. Kept as keyed HMAC-SHA256 digests under a subkey of the master key, as client
secrets are: a database dump alone tells nothing, and issuing ten costs microseconds where ten
argon2id hashes held the event loop for a second (62 random bits need no slow hash once the key
is secret; whoever has the master key can unseal TOTP secrets anyway). A code's first four
characters name it, so checking one costs one digest. Using a code deletes it in the same
statement that finds it."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable

from tokenward.core.ports import RecoveryCodes
from tokenward.core.records import RecoveryCode
from tokenward.core.throttle import SignInThrottle
from tokenward.oauth.client_auth import SecretHasher
from tokenward.services.totp import Check

COUNT = 10
_ALPHABET = string.ascii_lowercase + string.digits  # 36 symbols
_ID_LENGTH = 4
_LENGTH = 12  # 62 bits: XXXX-XXXX-XXXX
MAX_INPUT = 32


def normalise(code: str) -> str:
    return "".join(code.lower().split()).replace("-", "")[:MAX_INPUT]


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise(code)) == _LENGTH


def _display(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, _LENGTH, 4))


class RecoveryCodeService:
    def __init__(
        self,
        codes: RecoveryCodes,
        digests: SecretHasher,
        throttle: SignInThrottle,
        clock: Callable[[], float],
    ) -> None:
        self._codes = codes
        self._digests = digests
        self._throttle = throttle
        self._clock = clock

    async def issue(self, user_id: str) -> list[str]:
        """New codes for the user (the old ones stop working); the only time they are seen."""
        plain: dict[str, str] = {}
        while len(plain) < COUNT:  # distinct names: the first four characters
            code = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
            plain.setdefault(code[:_ID_LENGTH], code)
        now = self._clock()
        await self._codes.replace(
            user_id,
            [
                RecoveryCode(user_id, code_id, self._digests.digest(code), now)
                for code_id, code in plain.items()
            ],
        )
        return [_display(code) for code in plain.values()]

    async def remaining(self, user_id: str) -> int:
        return len(await self._codes.of_user(user_id))

    async def use_throttled(self, user_id: str, username: str, code: str, ip: str) -> Check:
        """`use`, counted in the sign-in throttle like a wrong password or TOTP code."""
        attempt = await self._throttle.attempt(f"totp:{username}", ip)
        if attempt.wait is not None:
            return Check(False, f"Too many wrong codes. Try again in {attempt.wait} seconds.", 429)
        if not await self.use(user_id, code):
            return Check(False, "That recovery code is not right or was used already.", 401)
        await self._throttle.succeeded(attempt)
        return Check(True)

    async def use(self, user_id: str, code: str) -> bool:
        """True once per code: the code matches, and this call is the one that deleted it."""
        typed = normalise(code)
        if len(typed) != _LENGTH:
            return False
        found = next(
            (c for c in await self._codes.of_user(user_id) if c.code_id == typed[:_ID_LENGTH]),
            None,
        )
        if found is None:
            return False
        if not self._digests.matches(typed, found.code_hash):  # constant time
            return False
        return await self._codes.use(user_id, found.code_id)

    async def clear(self, user_id: str) -> None:
        await self._codes.replace(user_id, [])
