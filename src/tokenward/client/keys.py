"""The key a FileStore encrypts with: derived from a passphrase (scrypt, RFC 7914) or a random
key kept in the OS keyring. The file's header says which, and for scrypt with what parameters;
parameters are bounded on read, so a planted file cannot make us burn gigabytes."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tokenward.client.errors import StoreError
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode

KEYRING_SERVICE = "tokenward"
MAX_SCRYPT_N = 2**20
SALT_BYTES = 16


@dataclass(frozen=True, slots=True, repr=False)
class FileKey:
    key: bytes
    header: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FileKey(kdf={self.header.get('kdf')!r})"


def keyring_module() -> Any | None:
    """The `keyring` module when it is installed and has a working backend; else None."""
    try:
        import keyring  # noqa: PLC0415 - optional dependency
        from keyring.backends import fail  # noqa: PLC0415
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken backend is an absent one
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) < 0:
        return None
    return keyring


def file_key_for(
    header: dict[str, Any] | None,
    path: str,
    passphrase: str | Callable[[], str] | None,
    use_keyring: bool | None,
    scrypt_n: int,
) -> FileKey:
    if header is None:
        return _new_key(path, passphrase, use_keyring, scrypt_n)
    if not isinstance(header, dict):
        raise StoreError(f"{path} is damaged")
    if header.get("kdf") == "scrypt":
        return _scrypt(header, _resolve(passphrase, path))
    if header.get("kdf") == "keyring":
        return _from_keyring(header, path)
    raise StoreError(f"{path} uses an unknown key derivation")


def _new_key(
    path: str,
    passphrase: str | Callable[[], str] | None,
    use_keyring: bool | None,
    scrypt_n: int,
) -> FileKey:
    if passphrase is not None and not use_keyring:
        header = {
            "kdf": "scrypt",
            "salt": b64url_encode(secrets.token_bytes(SALT_BYTES)),
            "n": scrypt_n,
            "r": 8,
            "p": 1,
        }
        return _scrypt(header, _resolve(passphrase, path))
    module = keyring_module() if use_keyring is not False else None
    if module is None:
        raise StoreError(
            f"encrypting {path} needs a passphrase or an OS keyring (pip install keyring)"
        )
    key_id = secrets.token_urlsafe(12)
    key = secrets.token_bytes(32)
    try:
        module.set_password(KEYRING_SERVICE, f"file-key:{key_id}", b64url_encode(key))
    except Exception:  # noqa: BLE001 - its text may hold the key
        raise StoreError("the OS keyring could not store the token file's key") from None
    return FileKey(key, {"kdf": "keyring", "id": key_id})


def _resolve(passphrase: str | Callable[[], str] | None, path: str) -> str:
    value = passphrase() if callable(passphrase) else passphrase
    if not value:
        raise StoreError(f"{path} is encrypted with a passphrase: give it")
    return value


def _scrypt(header: dict[str, Any], passphrase: str) -> FileKey:
    try:
        salt = b64url_decode(str(header["salt"]))
        n, r, p = (int(header[name]) for name in ("n", "r", "p"))
    except (KeyError, TypeError, ValueError, Base64Error):
        raise StoreError("the token file's key parameters are damaged") from None
    power_of_two = n > 1 and n & (n - 1) == 0
    if not power_of_two or n > MAX_SCRYPT_N or not 1 <= r <= 16 or not 1 <= p <= 4:
        raise StoreError("the token file's scrypt parameters are out of bounds")
    if len(salt) < SALT_BYTES:
        raise StoreError("the token file's salt is too short")
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
    return FileKey(key, header)


def _from_keyring(header: dict[str, Any], path: str) -> FileKey:
    module = keyring_module()
    if module is None:
        raise StoreError(f"{path} is encrypted with a key in the OS keyring, which is unavailable")
    try:
        value = module.get_password(KEYRING_SERVICE, f"file-key:{header.get('id')}")
    except Exception:  # noqa: BLE001
        raise StoreError("the OS keyring could not be read") from None
    if value is None:
        raise StoreError(f"the key of {path} is not in this OS keyring")
    try:
        key = b64url_decode(value)
    except Base64Error:
        raise StoreError("the token file's key in the OS keyring is damaged") from None
    return FileKey(key, header)
