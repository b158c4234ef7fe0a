"""Where tokens live between requests and between runs.

`MemoryStore` for a process's lifetime. `FileStore`: one JSON file, AES-256-GCM encrypted under
a key from a passphrase (scrypt) or held in the OS keyring, written atomically (temp file in the
same directory, fsync, `os.replace`) with mode 0600, and refused unread when others may read or
write it. `KeyringStore`: each entry in the OS keyring, when the optional `keyring` package is
installed. None of them logs, prints or puts a token into an error or a repr.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tokenward.client.errors import InsecureStoreError, StoreError
from tokenward.client.keys import FileKey, file_key_for, keyring_module
from tokenward.client.tokens import TokenSet
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode

FORMAT = "tokenward-tokens"
VERSION = 1
KEYRING_SERVICE = "tokenward"
# The OS keyring is what protects a KeyringStore entry; DpopKey exports only encrypted PKCS#8,
# so the DPoP key inside gets this fixed wrap, which adds nothing and claims nothing.
KEYRING_WRAP = b"tokenward-keyring-entry"


class TokenStore(Protocol):
    def load(self, key: str) -> TokenSet | None: ...

    def save(self, key: str, tokens: TokenSet) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._entries: dict[str, TokenSet] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore(entries={len(self._entries)})"

    def load(self, key: str) -> TokenSet | None:
        with self._lock:
            return self._entries.get(key)

    def save(self, key: str, tokens: TokenSet) -> None:
        with self._lock:
            self._entries[key] = tokens

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=purpose).derive(key)


class FileStore:
    """`passphrase` (a string, or a callable asked once when first needed) or the OS keyring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        passphrase: str | Callable[[], str] | None = None,
        use_keyring: bool | None = None,
        scrypt_n: int = 2**15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._passphrase = passphrase
        self._use_keyring = use_keyring
        self._scrypt_n = scrypt_n
        self._clock = clock  # for the DPoP keys it loads
        self._lock = threading.Lock()
        self._key: FileKey | None = None

    def __repr__(self) -> str:
        return f"FileStore(path={str(self.path)!r})"

    def load(self, key: str) -> TokenSet | None:
        with self._lock:
            with self._file_errors("read"):
                entry = self._read().get(key)
            return TokenSet.from_json(entry, self._wrap(), self._clock) if entry else None

    def save(self, key: str, tokens: TokenSet) -> None:
        with self._lock, self._file_errors("save"), self._exclusive():
            entries = self._read()
            entries[key] = tokens.to_json(self._wrap())
            self._write(entries)

    def delete(self, key: str) -> None:
        with self._lock, self._file_errors("update"), self._exclusive():
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)

    @contextmanager
    def _file_errors(self, doing: str) -> Iterator[None]:
        """A full disk, a read-only or missing directory: StoreError, the OSError its cause."""
        try:
            yield
        except OSError as exc:
            raise StoreError(f"cannot {doing} the token file {self.path} ({exc.strerror})") from exc

    def keys(self) -> list[str]:
        with self._lock, self._file_errors("read"):
            return sorted(self._read())

    # --- file ------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError:
            raise StoreError(f"cannot open the token file {self.path}") from None
        with os.fdopen(fd, "rb") as handle:
            _check_private(os.fstat(handle.fileno()), self.path)
            raw = handle.read(1 << 22)
        try:
            envelope = orjson.loads(raw)
            if envelope.get("format") != FORMAT or envelope.get("version") != VERSION:
                raise StoreError(f"{self.path} is not a tokenward token file")
            file_key = self._file_key(envelope["kdf"])
            plain = AESGCM(file_key.key).decrypt(
                b64url_decode(envelope["nonce"]),
                b64url_decode(envelope["ciphertext"]),
                _aad(envelope["kdf"]),
            )
            entries = orjson.loads(plain)["entries"]
        except InvalidTag:
            raise StoreError(
                f"cannot decrypt {self.path}: wrong passphrase or key, or the file was altered"
            ) from None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, Base64Error):
            raise StoreError(f"{self.path} is damaged") from None
        if not isinstance(entries, dict):
            raise StoreError(f"{self.path} is damaged")
        return entries

    def _write(self, entries: dict[str, Any]) -> None:
        file_key = self._file_key(None)
        nonce = secrets.token_bytes(12)  # random 96-bit GCM nonce, new for every write
        ciphertext = AESGCM(file_key.key).encrypt(
            nonce, orjson.dumps({"entries": entries}), _aad(file_key.header)
        )
        envelope = {
            "format": FORMAT,
            "version": VERSION,
            "kdf": file_key.header,
            "nonce": b64url_encode(nonce),
            "ciphertext": b64url_encode(ciphertext),
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".tmp")
        try:  # mkstemp creates the file 0600 and ours; os.replace swaps it in whole
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(envelope))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Read-modify-write under a lock file, so two processes do not drop each other's
        entries (POSIX; elsewhere the in-process lock alone)."""
        try:
            import fcntl  # noqa: PLC0415 - POSIX only
        except ImportError:
            yield
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _file_key(self, header: dict[str, Any] | None) -> FileKey:
        if self._key is None or (header is not None and header != self._key.header):
            self._key = file_key_for(
                header, str(self.path), self._passphrase, self._use_keyring, self._scrypt_n
            )
        return self._key

    def _wrap(self) -> bytes:
        key = self._key or self._file_key(None)
        return _subkey(key.key, b"tokenward dpop key wrap")


def _aad(header: object) -> bytes:
    # The header is authenticated too: nobody can swap in weaker scrypt parameters unnoticed.
    return orjson.dumps({"format": FORMAT, "version": VERSION, "kdf": header})


def _check_private(info: os.stat_result, path: Path) -> None:
    if os.name != "posix":
        return
    if not stat.S_ISREG(info.st_mode):
        raise InsecureStoreError(f"{path} is not a regular file")
    if info.st_mode & 0o077:
        mode = oct(info.st_mode & 0o777)
        raise InsecureStoreError(
            f"{path} is open to other users (mode {mode}); `chmod 600 {path}` if you trust it"
        )
    if info.st_uid != os.getuid():
        raise InsecureStoreError(f"{path} belongs to another user")


class KeyringStore:
    """Entries in the OS keyring (service `tokenward`). Needs the `keyring` package."""

    def __init__(self, service: str = KEYRING_SERVICE, *, backend: Any = None) -> None:
        module = backend if backend is not None else keyring_module()
        if module is None:
            raise StoreError("the OS keyring is not available: pip install keyring")
        self._keyring: Any = module
        self._service = service

    def __repr__(self) -> str:
        return f"KeyringStore(service={self._service!r})"

    def load(self, key: str) -> TokenSet | None:
        try:
            value = self._keyring.get_password(self._service, key)
        except Exception:  # noqa: BLE001 - any backend failure; its text may hold secrets
            raise StoreError("the OS keyring could not be read") from None
        if value is None:
            return None
        try:
            return TokenSet.from_json(orjson.loads(value), KEYRING_WRAP)
        except orjson.JSONDecodeError:
            raise StoreError("a keyring entry is damaged") from None

    def save(self, key: str, tokens: TokenSet) -> None:
        value = orjson.dumps(tokens.to_json(KEYRING_WRAP)).decode()
        try:
            self._keyring.set_password(self._service, key, value)
        except Exception:  # noqa: BLE001
            raise StoreError("the OS keyring could not be written") from None

    def delete(self, key: str) -> None:
        # Absent already is fine, and a backend's failure text may hold secrets: nothing to say.
        with suppress(Exception):
            self._keyring.delete_password(self._service, key)
