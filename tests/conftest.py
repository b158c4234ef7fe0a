"""Shared fixtures: a frozen clock, keyrings, validators. Nothing here sleeps."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.store.memory import MemoryRevocationStore
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import KeyPolicy, Keyring

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
SHARED = Path(__file__).resolve().parents[2] / "shared"
IN_CI = os.environ.get("CI") == "true"


class FrozenClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def shared_path(*parts: str) -> Path:
    """A file under ../shared; its absence fails in CI and skips elsewhere with a hint."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing: clone tokenward beside its shared/ folder"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=["ES256"])
def keyring(request: pytest.FixtureRequest, clock: FrozenClock) -> Keyring:
    ring = Keyring(KeyPolicy(algorithm=request.param), clock)
    ring.ensure_ready()
    return ring


@pytest.fixture
def strategy(keyring: Keyring, clock: FrozenClock) -> JwtAccessTokenStrategy:
    return JwtAccessTokenStrategy(keyring, ISSUER, clock=clock)


@pytest.fixture
def revocations() -> MemoryRevocationStore:
    return MemoryRevocationStore()


@pytest.fixture
def validator(
    keyring: Keyring, clock: FrozenClock, revocations: MemoryRevocationStore
) -> Validator:
    mirror = RevocationMirror()
    revocations.attach(mirror)
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        clock=clock,
        leeway=30,
    )


@pytest.fixture
def mint(strategy: JwtAccessTokenStrategy) -> Callable[..., str]:
    """Mint a real signed access token; keyword arguments override the grant."""

    def _mint(
        subject: str = "alice",
        client_id: str = "client-1",
        scopes: tuple[str, ...] = ("read",),
        audience: tuple[str, ...] = (AUDIENCE,),
        session_id: str | None = None,
        cnf: dict[str, str] | None = None,
    ) -> str:
        grant = TokenGrant(
            subject, client_id, audience, frozenset(scopes), session_id=session_id, cnf=cnf
        )
        return strategy.mint_sync(grant).value

    return _mint


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
