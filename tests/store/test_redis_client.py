"""The Redis client every backend uses: bounded waits, and a restart costs no failed command."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.store.redis_server import private_redis
from tokenward.store.redis_client import SOCKET_TIMEOUT, connect

pytestmark = pytest.mark.anyio


async def test_first_command_after_a_restart_succeeds(tmp_path: Path) -> None:
    with private_redis(str(tmp_path)) as server:
        redis = connect(server.url)
        try:
            # Several pooled connections, all of which die with the server.
            await asyncio.gather(*(redis.set(f"k{i}", i) for i in range(5)))
            server.stop()
            with pytest.raises(RedisConnectionError):
                await redis.ping()
            server.start()
            # Pooled connections are dead; each first use reconnects once instead of failing.
            assert await asyncio.gather(*(redis.ping() for _ in range(5))) == [True] * 5
        finally:
            await redis.aclose()


async def test_an_unresponsive_server_fails_within_the_socket_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = connect(f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await redis.get("anything")
        # One wait, not redis-py's default of retries with backoff on top.
        assert time.monotonic() - started < SOCKET_TIMEOUT + 0.5
    finally:
        await redis.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
