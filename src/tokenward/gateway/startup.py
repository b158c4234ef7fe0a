"""Starting the gateway process: every failure is one line naming the setting and the fix.

The listening sockets are bound here, before anything else, rather than by uvicorn: uvicorn
logs a bind error itself and exits 1 with its own wording, so the gateway could neither name
the setting nor keep to one line. Binding first also means a busy port is reported before the
gateway connects to any database. The app's lifespan is driven here too (`Lifespan`), so a
background task that cannot start (the revocation feed's database) is reported the same way;
`GatewayServer` stops it again from inside uvicorn's shutdown.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from tokenward.gateway.model import Tls

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
BACKLOG = 2048  # uvicorn's default


class StartupError(Exception):
    """The gateway cannot start: `setting: problem; fix`, printed as one line (exit 2)."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        super().__init__(f"{setting}: {problem}; {fix}")
        self.setting = setting


def _family(host: str, port: int, setting: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        raise StartupError(
            f"{setting}.host",
            f"{host!r} does not resolve",
            f"set {setting}.host to an IP address or a resolvable name (127.0.0.1, 0.0.0.0)",
        ) from None


def reserve(host: str, port: int, setting: str) -> socket.socket:
    """host:port held for the workers (`workers: N`): bound with SO_REUSEPORT but never
    listening, so the kernel hands it no connection while each worker binds its own."""
    sock = socket.socket(_family(host, port, setting), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, setting, exc) from None
    return sock


def bind(host: str, port: int, setting: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port), or a StartupError.
    `reuse_port`: one of several workers' sockets on the port (SO_REUSEPORT: the kernel
    spreads new connections over them)."""
    family = _family(host, port, setting)
    try:
        listener = socket.create_server(
            (host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port
        )
    except OSError as exc:
        raise _bind_error(host, port, setting, exc) from None
    # Accepted connections inherit it: a small answer (an authorization decision, a 401) must
    # not wait for the peer's delayed ACK (Nagle), which costs up to 40 ms on a kept-alive
    # connection whose previous answer is still unacknowledged.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _bind_error(host: str, port: int, setting: str, exc: OSError) -> StartupError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"{setting}.port",
            f"{where} is already in use",
            f"stop the process listening there or choose another {setting}.port",
        )
    if exc.errno == errno.EACCES:
        return StartupError(
            f"{setting}.port",
            f"not allowed to listen on {where}",
            "use a port above 1023 or grant the capability to bind low ports",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError(
            f"{setting}.host",
            f"{host} is not an address of this machine",
            f"set {setting}.host to one of its addresses, or 0.0.0.0 for all",
        )
    return StartupError(
        setting, f"cannot listen on {where} ({exc.strerror})", f"check {setting}.host and .port"
    )


def check_tls(tls: Tls) -> None:
    """Load `tls.cert` and `tls.key` as uvicorn will, so a bad pair is reported, not traced."""
    if tls.cert is None or tls.key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for setting, path in (("tls.cert", tls.cert), ("tls.key", tls.key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartupError(
                setting,
                f"cannot read {path} ({exc.strerror})",
                "point it at a readable PEM file",
            ) from None
    try:
        # No password prompt: an encrypted key would make uvicorn ask on the terminal.
        context.load_cert_chain(tls.cert, tls.key, password=_no_password)
    except (ssl.SSLError, ValueError):
        raise StartupError(
            "tls.cert/tls.key",
            f"{tls.cert} and {tls.key} are not a PEM certificate and its unencrypted private key",
            "give the certificate (chain) and the matching key, both PEM, the key unencrypted",
        ) from None


def _no_password() -> bytes:
    return b""


def url(scheme: str, sock: socket.socket) -> str:
    """Where a bound socket listens, as a URL (IPv6 in brackets)."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class GatewayServer(uvicorn.Server):
    """uvicorn's server, running `after_shutdown` at the end of its shutdown: when a signal
    stopped it, `serve()` re-raises that signal as it returns, and the process ends there."""

    def __init__(
        self, config: uvicorn.Config, after_shutdown: Callable[[], Awaitable[object]]
    ) -> None:
        super().__init__(config)
        self._after_shutdown = after_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await self._after_shutdown()


class StartupFailed(Exception):
    """The app's lifespan reported `lifespan.startup.failed`; the message is its reason."""


class Lifespan:
    """Drives an ASGI app's lifespan (startup before serving, shutdown after), as uvicorn would
    with `lifespan="on"`, but reporting a failed start to the caller instead of logging it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.started = False

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        task = self._task = asyncio.create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._reply(task)
        if reply["type"] != "lifespan.startup.complete":
            raise StartupFailed(str(reply.get("message", "")) or "the gateway could not start")
        self.started = True

    async def _run(self, scope: MutableMapping[str, Any]) -> None:
        await self._app(scope, self._inbox.get, self._outbox.put)

    async def shutdown(self) -> None:
        task = self._task
        if not self.started or task is None:
            return
        self.started = False
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._reply(task)
        await task

    async def _reply(self, task: asyncio.Task[None]) -> MutableMapping[str, Any]:
        """The app's next message, or, if it returned or raised without one, a failure."""
        getter = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        error = task.exception()
        return {"type": "failed", "message": f"the gateway could not start: {type(error).__name__}"}
