"""Bodies stream both ways without being held whole; upstream failures answer fast, never hang."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx

from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory
from tests.gateway.upstream_app import Upstream, big_block_digest

SIZE = 50 * 1024 * 1024
TIMEOUTS = """
routes:
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none,
      timeouts: {{connect: 1, read: 0.3}}}}
  - {{name: down, prefix: /down, upstreams: ["http://127.0.0.1:DEAD"], auth: none}}
"""


def test_large_download_streams_through(gateway: GatewayFactory) -> None:
    running = gateway()
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", f"{running.base}/open/big/{SIZE}", timeout=60) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers  # chunked end to end
        for chunk in response.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    assert size == SIZE
    assert digest.hexdigest() == big_block_digest(SIZE)


def test_large_upload_streams_through(gateway: GatewayFactory) -> None:
    running = gateway()
    block = bytes(range(256)) * 256
    expected = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(SIZE // len(block)):
            expected.update(block)
            yield block

    response = running.http.post("/open/upload", content=body(), timeout=60)
    assert response.status_code == 200
    seen = response.json()
    assert seen["size"] == SIZE
    assert seen["sha256"] == expected.hexdigest()
    assert seen["headers"]["transfer-encoding"] == ["chunked"]


def test_download_is_forwarded_before_the_upstream_finishes(
    gateway: GatewayFactory, upstream: Upstream
) -> None:
    """The upstream sends one chunk, then waits for the test to have received it: a gateway
    that buffered the body would deadlock here (bounded by the upstream's 10 s wait)."""
    running = gateway()
    gate = upstream.gate("download")
    with httpx.stream("GET", f"{running.base}/open/gate/download", timeout=10) as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"first"
        gate.set()
        assert b"".join(chunks) == b"second"


def test_upload_is_forwarded_before_the_client_finishes(
    gateway: GatewayFactory, upstream: Upstream
) -> None:
    running = gateway()
    arrived = upstream.first_chunk("upload")

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        # The upstream has seen the first chunk while the request is still being sent.
        assert arrived.wait(10)
        yield b"y" * 1000

    response = running.http.post(
        "/open/echo",
        content=body(),
        headers={"x-test-upload": "upload"},
        timeout=15,
    )
    assert response.json()["size"] == 2000


def test_upstream_down_is_502(gateway: GatewayFactory) -> None:
    running = gateway(TIMEOUTS.replace("DEAD", str(free_port())))
    response = running.http.get("/down/x", timeout=10)
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"
    audit = running.last_audit()
    assert (audit["decision"], audit["reason"]) == ("allow", "upstream_unreachable")


def test_slow_upstream_is_504(gateway: GatewayFactory) -> None:
    running = gateway(TIMEOUTS.replace("DEAD", str(free_port())))
    response = running.http.get("/open/slow", timeout=10)
    assert response.status_code == 504
    assert response.json()["error"] == "gateway_timeout"
    assert running.last_audit()["reason"] == "upstream_timeout"


def test_keep_alive_connections_are_reused(gateway: GatewayFactory) -> None:
    running = gateway()
    with httpx.Client(base_url=running.base) as client:
        for _ in range(20):
            assert client.get("/open/echo").status_code == 200
    pool = running.gateway.proxy.pool
    assert sum(len(idle) for idle in pool._idle.values()) == 1


def test_many_concurrent_requests(gateway: GatewayFactory) -> None:
    running = gateway()
    failures: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=running.base) as client:
            for index in range(25):
                response = client.post("/open/echo", content=b"z" * index)
                if response.status_code != 200 or response.json()["size"] != index:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
