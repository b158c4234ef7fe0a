"""Token stores: memory; an encrypted, atomically written, private file; the OS keyring."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import FrozenClock
from tokenward.client import (
    DpopKey,
    FileStore,
    InsecureStoreError,
    KeyringStore,
    MemoryStore,
    StoreError,
    TokenSet,
)
from tokenward.client import keys as client_keys

FAST_SCRYPT = 2**10  # the default (2**15) costs ~100 ms per derivation: too slow for every test
PASSPHRASE = "a long passphrase"


class FakeKeyring:
    """A keyring backend in memory: get/set/delete_password, as the keyring package has."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


def token_set(clock: FrozenClock, dpop: bool = False) -> TokenSet:
    return TokenSet(
        access_token="eyJ.access-token-value.sig",
        token_type="DPoP" if dpop else "Bearer",
        expires_at=clock() + 300,
        refresh_token="twr_refresh-token-value",
        scope="read",
        id_token="eyJ.id-token-value.sig",
        dpop_key=DpopKey(clock=clock) if dpop else None,
        issuer="https://as.example",
        client_id="cli",
    )


def file_store(path: Path, clock: FrozenClock, **options: Any) -> FileStore:
    options.setdefault("passphrase", PASSPHRASE)
    return FileStore(path, scrypt_n=FAST_SCRYPT, clock=clock, **options)


def test_memory_store_round_trip(clock: FrozenClock) -> None:
    store = MemoryStore()
    tokens = token_set(clock)
    store.save("k", tokens)
    assert store.load("k") is tokens
    store.delete("k")
    assert store.load("k") is None


def test_file_store_round_trip_encrypted_and_private(tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "config" / "tokens.json"
    tokens = token_set(clock, dpop=True)
    store = file_store(path, clock)
    store.save("default", tokens)
    store.save("other", token_set(clock))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = path.read_bytes()
    for secret in ("access-token-value", "refresh-token-value", "id-token-value", "PRIVATE"):
        assert secret.encode() not in raw
    assert sorted(os.listdir(path.parent)) == ["tokens.json", "tokens.json.lock"]  # no temp

    loaded = file_store(path, clock).load("default")  # a new process: derives the key again
    assert loaded is not None
    assert loaded.access_token == tokens.access_token
    assert loaded.refresh_token == tokens.refresh_token
    assert loaded.dpop_key is not None
    assert tokens.dpop_key is not None
    assert loaded.dpop_key.thumbprint == tokens.dpop_key.thumbprint
    assert file_store(path, clock).keys() == ["default", "other"]
    store.delete("other")
    assert file_store(path, clock).keys() == ["default"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_file_store_refuses_a_file_others_can_open(
    tmp_path: Path, clock: FrozenClock, mode: int
) -> None:
    path = tmp_path / "tokens.json"
    file_store(path, clock).save("default", token_set(clock))
    path.chmod(mode)
    with pytest.raises(InsecureStoreError) as caught:
        file_store(path, clock).load("default")
    assert "chmod 600" in str(caught.value)


def test_file_store_refuses_a_symlink(tmp_path: Path, clock: FrozenClock) -> None:
    real = tmp_path / "real.json"
    file_store(real, clock).save("default", token_set(clock))
    link = tmp_path / "tokens.json"
    link.symlink_to(real)
    with pytest.raises(StoreError):
        file_store(link, clock).load("default")


def test_wrong_passphrase_and_tampering_are_errors(tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "tokens.json"
    file_store(path, clock).save("default", token_set(clock))
    with pytest.raises(StoreError, match="wrong passphrase"):
        file_store(path, clock, passphrase="not it at all").load("default")
    envelope = orjson.loads(path.read_bytes())
    envelope["kdf"]["n"] = FAST_SCRYPT // 2  # weaker parameters, swapped in: the AAD catches it
    path.write_bytes(orjson.dumps(envelope))
    with pytest.raises(StoreError):
        file_store(path, clock).load("default")
    envelope["kdf"]["n"] = 2**30  # a planted file must not make us allocate a terabyte
    path.write_bytes(orjson.dumps(envelope))
    with pytest.raises(StoreError, match="out of bounds"):
        file_store(path, clock).load("default")


def test_a_missing_file_is_empty_and_no_key_is_an_error(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_keys, "keyring_module", lambda: None)
    path = tmp_path / "tokens.json"
    assert FileStore(path).load("default") is None
    with pytest.raises(StoreError, match="passphrase or an OS keyring"):
        FileStore(path).save("default", token_set(clock))


def test_passphrase_callable_is_asked_once(tmp_path: Path, clock: FrozenClock) -> None:
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        return PASSPHRASE

    store = file_store(tmp_path / "tokens.json", clock, passphrase=ask)
    store.save("a", token_set(clock))
    store.save("b", token_set(clock))
    assert store.load("a") is not None
    assert len(asked) == 1


def test_file_store_with_its_key_in_the_os_keyring(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = FakeKeyring()
    monkeypatch.setattr(client_keys, "keyring_module", lambda: keyring)
    path = tmp_path / "tokens.json"
    FileStore(path, use_keyring=True).save("default", token_set(clock))
    assert orjson.loads(path.read_bytes())["kdf"]["kdf"] == "keyring"
    assert len(keyring.entries) == 1
    loaded = FileStore(path).load("default")
    assert loaded is not None
    assert loaded.refresh_token == "twr_refresh-token-value"
    keyring.entries.clear()  # another machine, same file: no key
    with pytest.raises(StoreError, match="not in this OS keyring"):
        FileStore(path).load("default")


def test_keyring_store(clock: FrozenClock) -> None:
    backend = FakeKeyring()
    store = KeyringStore(backend=backend)
    tokens = token_set(clock, dpop=True)
    store.save("default", tokens)
    loaded = store.load("default")
    assert loaded is not None
    assert loaded.access_token == tokens.access_token
    assert loaded.dpop_key is not None
    store.delete("default")
    store.delete("default")  # absent already: fine
    assert store.load("default") is None


def test_keyring_store_without_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tokenward.client.storage.keyring_module", lambda: None)
    with pytest.raises(StoreError, match="pip install keyring"):
        KeyringStore()


def test_keyring_module_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_keyring(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "keyring" or name.startswith("keyring."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_keyring)
    assert client_keys.keyring_module() is None
