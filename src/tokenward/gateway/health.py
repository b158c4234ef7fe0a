"""The gateway's own listener (`metrics: {host, port}`): `/metrics`, `/healthz` and `/readyz`.

On a port of its own, so no path of it can shadow a proxied route, and probes and scrapes need
not pass the gateway's policy. It runs in a thread (as prometheus_client's server did), but the
health answers are computed on the gateway's event loop, so a loop that no longer runs is seen:

- `/healthz` (liveness): 200 when the event loop runs a step within `LOOP_TIMEOUT`, else 503.
- `/readyz` (readiness): 503 while starting or stopping, and while the revocation mirror is
  stale (past `max_staleness` the validators answer 503 to every token anyway); 200 otherwise.
  Each Redis client is PINGed and reported, but an unreachable Redis answers 200 `degraded`,
  not 503: every gateway shares that Redis, so a balancer dropping not-ready gateways would
  drop them all, turning the few decisions that need Redis (docs/deployment.md, Failure
  behaviour) into a total outage.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from redis.asyncio import Redis

from tokenward.guard import RevocationMirror

LOOP_TIMEOUT = 2.0  # seconds the event loop may take to run one step before it counts as stuck
PING_TIMEOUT = 1.0
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Health:
    """What the probes report. `serving()` says whether the gateway accepts requests now."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        serving: Callable[[], bool],
        *,
        mirrors: Sequence[RevocationMirror] = (),
        redis: Sequence[Redis] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._loop = loop
        self._serving = serving
        self._mirrors = list(mirrors)
        self._redis = list(dict.fromkeys(redis))  # one client may serve several roles
        self._clock = clock

    def live(self) -> tuple[int, dict[str, Any]]:
        """From another thread: does the event loop still run?"""
        try:
            self._on_loop(asyncio.sleep(0))
        except (TimeoutError, RuntimeError):
            return 503, {"status": "unresponsive"}
        return 200, {"status": "ok"}

    def ready(self) -> tuple[int, dict[str, Any]]:
        """From another thread: the checks, run on the event loop."""
        try:
            checks: dict[str, str] = self._on_loop(self.checks())
        except (TimeoutError, RuntimeError):
            return 503, {"status": "unresponsive"}
        failed = [name for name, value in checks.items() if value != "ok" and name != "redis"]
        if failed:
            return 503, {"status": "not_ready", "checks": checks}
        status = "degraded" if checks.get("redis", "ok") != "ok" else "ready"
        return 200, {"status": status, "checks": checks}

    async def checks(self) -> dict[str, str]:
        checks = {"serving": "ok" if self._serving() else "not serving (starting or stopping)"}
        if self._mirrors:
            now = self._clock()
            stale = any(mirror.fresh_until < now for mirror in self._mirrors)
            checks["revocations"] = "stale (tokens are refused with 503)" if stale else "ok"
        if self._redis:
            answers = await asyncio.gather(*(self._ping(client) for client in self._redis))
            checks["redis"] = "ok" if all(answers) else "unreachable"
        return checks

    @staticmethod
    async def _ping(client: Redis) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await client.ping()
        except Exception:  # noqa: BLE001 - any failure is "unreachable" to a probe
            return False
        return True

    def _on_loop(self, work: Coroutine[Any, Any, Any]) -> Any:
        try:
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
        except RuntimeError:  # the loop is closed: the process is on its way out
            work.close()
            raise
        try:
            return future.result(LOOP_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise


def admin_app(registry: CollectorRegistry, health: Health) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: the two probes, and prometheus_client's exposition for everything else."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            answer: Iterable[bytes] = metrics(environ, start_response)
            return answer
        status, body = health.live() if path == "/healthz" else health.ready()
        payload = orjson.dumps(body)
        start_response(
            f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [payload]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck probe must not hold the process at exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes are not logged (the audit log covers the proxied traffic)."""


class AdminListener:
    """Serves `app` on an already bound socket (startup.bind reported a busy port)."""

    def __init__(self, sock: socket.socket, app: Callable[..., Iterable[bytes]]) -> None:
        server = _Server(sock.getsockname()[:2], _Quiet, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.server_address = sock.getsockname()
        # What HTTPServer.server_bind would set (without its reverse DNS lookup).
        server.server_name, server.server_port = str(sock.getsockname()[0]), sock.getsockname()[1]
        server.setup_environ()
        server.set_app(app)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="tokenward-gateway-admin", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
