"""A real upstream, the gateway and (where needed) the authorization server, over loopback HTTP.

Servers run in threads on free ports; the only waits are bounded waits for them to start.
Time for tokens and rate limits is the shared FrozenClock, moved by the tests.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.e2e.live import free_port
from tests.gateway.upstream_app import Upstream
from tokenward.deploy.gateway import with_check_lane
from tokenward.gateway.app import Gateway
from tokenward.gateway.audit import AuditLog
from tokenward.gateway.config import parse_config
from tokenward.gateway.serving import http_protocol
from tokenward.guard import Validator

BASE_CONFIG = """
trust:
  issuer: {issuer}
  audience: {audience}
routes:
  - name: items
    prefix: /items
    upstreams: [{upstream}]
    auth: bearer
    scopes: [read]
  - name: open
    prefix: /open
    upstreams: [{upstream}]
    auth: none
"""


@contextmanager
def serve(app: Any, port: int | None = None, **options: Any) -> Iterator[str]:
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
        timeout_graceful_shutdown=1,
        proxy_headers=False,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)  # bounded wait for the server to start
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    app = Upstream()
    app.port = free_port()
    with serve(app, app.port):
        yield app


@pytest.fixture(scope="module")
def upstream_url(upstream: Upstream) -> str:
    return f"http://127.0.0.1:{upstream.port}"


@dataclass
class Running:
    base: str
    gateway: Gateway
    audit: io.BytesIO
    sent: int = 0

    @cached_property
    def http(self) -> httpx.Client:
        """A client that counts answers, so audit reads can wait for their lines."""

        def count(_response: httpx.Response) -> None:
            self.sent += 1

        return httpx.Client(base_url=self.base, event_hooks={"response": [count]}, timeout=30)

    def audit_lines(self) -> list[dict[str, Any]]:
        # The line is written just after the answer went out: wait (bounded) until it is there.
        deadline = time.monotonic() + 5
        while True:
            lines = [json.loads(line) for line in self.audit.getvalue().splitlines()]
            if len(lines) >= self.sent or time.monotonic() > deadline:
                return lines
            time.sleep(0.005)

    def last_audit(self) -> dict[str, Any]:
        return self.audit_lines()[-1]


GatewayFactory = Callable[..., Running]


@pytest.fixture
def gateway(
    validator: Validator, clock: FrozenClock, upstream_url: str
) -> Iterator[GatewayFactory]:
    """Start a gateway for a YAML config (placeholders: {upstream} {issuer} {audience})."""
    stack: list[Any] = []

    def start(
        text: str = BASE_CONFIG, server: dict[str, Any] | None = None, **options: Any
    ) -> Running:
        config = parse_config(
            text.format(upstream=upstream_url, issuer=ISSUER, audience=AUDIENCE), "test.yaml"
        )
        sink = io.BytesIO()
        app = Gateway(
            config,
            options.pop("validator", validator),
            clock=clock,
            audit=AuditLog(sink),
            **options,
        )
        # The gateway's own server protocol (coalesced writes, a proxy's checks in the express
        # lane), as `tokenward gateway` runs it.
        context = serve(app, http=with_check_lane(http_protocol(), config), **(server or {}))
        base = context.__enter__()
        stack.append(context)
        running = Running(base, app, sink)
        clients.append(running)
        return running

    clients: list[Running] = []
    yield start
    for running in clients:
        if "http" in running.__dict__:
            running.http.close()
    for context in reversed(stack):
        context.__exit__(None, None, None)
