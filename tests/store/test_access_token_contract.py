"""AccessTokenStore contract: opaque tokens by digest, rebuilt exactly, gone once expired."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import text

from tests.conftest import FrozenClock
from tests.store.conftest import Backend, open_engine, sqlite_writer
from tokenward.core.claims import AccessToken
from tokenward.store.sql import SqlAccessTokenStore, SqliteAccessTokenStore, access_tokens
from tokenward.store.sql.engine import session_factory

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000  # FrozenClock's default start


def full_token(exp: int = NOW + 900) -> AccessToken:
    return AccessToken(
        iss="https://issuer.example",
        sub="alice",
        aud=("https://api.example", "https://other.example"),
        client_id="client-1",
        scopes=frozenset({"write", "read", "openid"}),
        exp=exp,
        iat=NOW,
        jti="jti-1",
        nbf=NOW,
        sid="session-1",
        auth_time=NOW - 30,
        acr="urn:mace:incommon:iap:silver",
        cnf=MappingProxyType({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        extra=MappingProxyType({"tenant": "acme", "roles": ["admin", "ops"], "n": 3, "f": 0.5}),
    )


def minimal_token(exp: int = NOW + 60) -> AccessToken:
    return AccessToken("https://issuer.example", "svc", ("api",), "svc", frozenset(), exp, NOW, "j")


async def test_unknown_digest_is_none(backend: Backend) -> None:
    assert await backend.access_tokens.get("nope") is None


@pytest.mark.parametrize("token", [full_token(), minimal_token()], ids=["full", "minimal"])
async def test_a_saved_token_comes_back_equal_with_the_same_types(
    backend: Backend, token: AccessToken
) -> None:
    await backend.access_tokens.save("d1", token)

    loaded = await backend.access_tokens.get("d1")

    assert loaded == token
    assert loaded is not None
    assert type(loaded.aud) is tuple
    assert type(loaded.scopes) is frozenset
    assert isinstance(loaded.extra, Mapping)
    assert loaded.cnf is None or isinstance(loaded.cnf, Mapping)
    assert loaded.jkt == token.jkt
    assert loaded.scope == token.scope


async def test_a_token_expires_at_exp_on_the_injected_clock(backend: Backend) -> None:
    await backend.access_tokens.save("d1", full_token(exp=NOW + 10))

    backend.clock.now = NOW + 9.999
    assert await backend.access_tokens.get("d1") == full_token(exp=NOW + 10)
    backend.clock.now = NOW + 10
    assert await backend.access_tokens.get("d1") is None
    backend.clock.now = NOW + 11
    assert await backend.access_tokens.get("d1") is None


async def test_an_already_expired_token_is_never_returned(backend: Backend) -> None:
    await backend.access_tokens.save("d1", minimal_token(exp=NOW - 1))

    assert await backend.access_tokens.get("d1") is None
    assert backend.access_tokens.get_sync("d1") is None


async def test_saving_under_the_same_digest_replaces(backend: Backend) -> None:
    await backend.access_tokens.save("d1", minimal_token())
    await backend.access_tokens.save("d1", full_token())

    assert await backend.access_tokens.get("d1") == full_token()


async def test_tokens_are_kept_apart_by_digest(backend: Backend) -> None:
    await backend.access_tokens.save("d1", minimal_token())
    await backend.access_tokens.save("d2", full_token())

    assert await backend.access_tokens.get("d1") == minimal_token()
    assert await backend.access_tokens.get("d2") == full_token()


async def test_delete_reports_whether_there_was_a_token(backend: Backend) -> None:
    await backend.access_tokens.save("d1", full_token())
    await backend.access_tokens.save("d2", minimal_token())

    assert await backend.access_tokens.delete("d1") is True
    assert await backend.access_tokens.delete("d1") is False
    assert await backend.access_tokens.delete("never") is False
    assert await backend.access_tokens.get("d1") is None
    assert await backend.access_tokens.get("d2") == minimal_token()


async def test_get_sync_answers_like_get_or_not_at_all(backend: Backend) -> None:
    await backend.access_tokens.save("d1", full_token())

    answer = backend.access_tokens.get_sync("d1")

    # Memory answers without I/O; SQL cannot, and must say None rather than block the loop.
    expected = full_token() if backend.engine is None else None
    assert answer == expected
    assert backend.access_tokens.get_sync("nope") is None


async def test_saves_sweep_expired_rows_now_and_then(
    sql: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table must not grow without bound: every PURGE_EVERY-th save deletes expired rows.
    monkeypatch.setattr(access_tokens, "PURGE_EVERY", 3)
    await sql.access_tokens.save("old", minimal_token(exp=NOW + 5))
    await sql.access_tokens.save("live", full_token())
    sql.clock.advance(5)
    assert await row_count(sql) == 2

    await sql.access_tokens.save("new", minimal_token(exp=NOW + 60))

    assert await row_count(sql) == 2
    assert await sql.access_tokens.get("live") == full_token()


async def row_count(backend: Backend) -> int:
    assert backend.engine is not None
    async with backend.engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM access_tokens")) or 0)


async def test_sqlite_rows_are_the_same_whichever_store_wrote_them(
    tmp_path: Path, clock: FrozenClock
) -> None:
    # The server reads and writes through the SqliteWriter; the CLI and an in-memory database
    # through the ORM. Each must read what the other wrote, and delete it.
    async with open_engine("sqlite", tmp_path) as engine, sqlite_writer(engine) as writer:
        assert writer is not None
        orm = SqlAccessTokenStore(session_factory(engine), clock)
        direct = SqliteAccessTokenStore(session_factory(engine), writer, clock)
        await orm.save("by-orm", full_token())
        await direct.save("by-writer", full_token(exp=NOW + 60))

        assert await direct.get("by-orm") == full_token()
        assert await orm.get("by-writer") == full_token(exp=NOW + 60)
        assert await direct.delete("by-orm") is True
        assert await orm.delete("by-writer") is True
        assert await orm.get("by-orm") is None
        assert await direct.get("by-writer") is None
