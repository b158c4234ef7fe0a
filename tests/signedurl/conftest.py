"""Keys, a signer and a verifier sharing the frozen clock; nothing here sleeps."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tokenward.signedurl import KeySet, SigningKey, UrlSigner, Verdict, Verifier

NOW = 1_800_000_000
SECRET_1 = bytes(range(32))
SECRET_2 = bytes(range(100, 140))


@pytest.fixture
def keys() -> KeySet:
    return KeySet(SigningKey("2025-06", SECRET_1), [SigningKey("2025-05", SECRET_2)])


@pytest.fixture
def signer(keys: KeySet, clock: FrozenClock) -> UrlSigner:
    return UrlSigner(keys, clock=clock)


@pytest.fixture
def verifier(keys: KeySet, clock: FrozenClock) -> Verifier:
    return Verifier(keys, clock=clock)


def split(url: str) -> tuple[str, str]:
    """(raw path, raw query) as a server would hand them over; no parser's cleaning applied."""
    if "://" in url:
        rest = url.split("://", 1)[1]
        url = rest[rest.index("/") :]
    path, _, query = url.partition("?")
    return path, query


def verdict_of(verifier: Verifier, url: str, client_ip: str | None = None) -> Verdict:
    path, query = split(url)
    return verifier.verify_request(path, query, client_ip)
