"""Upstream health: active checks with thresholds both ways, passive marks for a cool-off,
the probe over a real loopback socket, and the checks' background task."""

from __future__ import annotations

import asyncio

from tests.conftest import FrozenClock
from tokenward.gateway.healthcheck import Health, HealthChecker, probe
from tokenward.gateway.model import Upstream
from tokenward.gateway.traffic_model import ActiveHealth, PassiveHealth

ACTIVE = ActiveHealth("/healthz", interval=0.05, timeout=0.05, healthy_threshold=2,
                      unhealthy_threshold=3)  # fmt: skip


def test_active_checks_take_it_out_and_back_by_their_thresholds() -> None:
    health = Health("u", ACTIVE, None)
    for _ in range(2):
        health.checked(False)
    assert health.usable()  # two failures: below unhealthy_threshold
    health.checked(True)  # resets the failure count
    for _ in range(3):
        health.checked(False)
    assert not health.usable()
    health.checked(True)
    assert not health.usable()  # one good check: below healthy_threshold
    health.checked(True)
    assert health.usable()


def test_passive_marks_last_a_cool_off() -> None:
    clock = FrozenClock()
    health = Health("u", None, PassiveHealth(failures=2, cooloff=10.0), clock)
    health.failed()
    health.succeeded()  # not consecutive
    health.failed()
    assert health.usable()
    health.failed()
    assert not health.usable()
    clock.advance(9.9)
    assert not health.usable()
    clock.advance(0.1)
    assert health.usable()


def test_good_active_checks_lift_a_passive_mark() -> None:
    clock = FrozenClock()
    health = Health("u", ACTIVE, PassiveHealth(failures=1, cooloff=600.0), clock)
    health.checked(True)
    health.checked(True)
    health.failed()
    assert not health.usable()
    health.checked(True)
    assert not health.usable()  # good checks counted from the mark on
    health.checked(True)
    assert health.usable()


async def _server(status: bytes) -> tuple[asyncio.Server, Upstream, list[bytes]]:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Upstream("http", "127.0.0.1", port, "/base"), seen


def test_the_probe_gets_the_path_and_judges_the_status() -> None:
    async def main() -> None:
        server, upstream, seen = await _server(b"204 No Content")
        async with server:
            assert await probe(upstream, "/healthz", 2.0)
        assert seen[0].startswith(b"GET /healthz HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{upstream.port}".encode() in seen[0]
        server, upstream, _ = await _server(b"503 Service Unavailable")
        async with server:
            assert not await probe(upstream, "/healthz", 2.0)
        # Nothing listening any more: refused, unhealthy.
        assert not await probe(upstream, "/healthz", 2.0)

    asyncio.run(main())


def test_the_checker_task_runs_the_checks_and_stops() -> None:
    async def main() -> None:
        server, upstream, _ = await _server(b"500 Internal Server Error")
        health = Health("u", ACTIVE, None)
        checker = HealthChecker(lambda: [(upstream, health)])
        async with server:
            await checker.start()
            try:
                for _ in range(1000):  # polls (at most 10 s) until three failed checks
                    if not health.usable():
                        break
                    await asyncio.sleep(0.01)
            finally:
                await checker.stop()
        assert not health.usable()
        assert checker._task is None

    asyncio.run(main())
