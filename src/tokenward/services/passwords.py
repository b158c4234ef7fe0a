"""Password hashing (argon2id) and the rule new passwords must meet."""

from __future__ import annotations

from argon2 import PasswordHasher

from tokenward.services.errors import AdminError

PASSWORDS = PasswordHasher()  # argon2id with the library's current recommended parameters


def check_password(password: str) -> None:
    if not 8 <= len(password) <= 1024:
        raise AdminError("passwords need 8 to 1024 characters")
