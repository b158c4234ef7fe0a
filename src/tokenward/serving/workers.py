"""N processes serving one port under one supervisor: `workers: N` of the gateway and
`tokenward serve --workers N`.

The supervisor holds the port (bound with SO_REUSEPORT, never listening, so a port of 0 is
chosen once and no connection waits on a socket nobody accepts from), forks the workers
before any event loop or thread exists, and waits until each has bound its own SO_REUSEPORT
socket and started: the kernel then spreads new connections over them. It prints the one
listening line, forwards SIGHUP (each worker reloads what it can) and SIGTERM/SIGINT
(graceful shutdown: each worker stops accepting, finishes its requests in flight and exits),
and restarts a worker that dies otherwise, under the same index. A worker that cannot start
stops them all and the supervisor exits 2, as a single process would (the worker has printed
its own one-line reason).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

START_TIMEOUT = 120.0  # seconds for every worker to start, on a loaded machine
RESTART_PAUSE = 1.0  # at least this long between two restarts of crashed workers


class Worker:
    """One worker's place: its index, the port, and how it tells the supervisor it serves."""

    def __init__(self, index: int, port: int, ready_fd: int) -> None:
        self.index = index
        self.port = port  # the supervisor's: a port given as 0 (any free port) is chosen once
        self._ready_fd = ready_fd

    def ready(self) -> None:
        os.write(self._ready_fd, b"!")
        os.close(self._ready_fd)


def reserve(host: str, port: int) -> socket.socket:
    """host:port held for the workers: bound with SO_REUSEPORT but never listening, so the
    kernel hands it no connection while each worker binds its own. Raises OSError."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def supervise(
    held: socket.socket,
    count: int,
    serve: Callable[[Worker], None],
    *,
    name: str,
    announce: Callable[[int], None],
) -> None:
    """Run `serve` in `count` processes until SIGTERM or SIGINT. `held`: the reserved port
    (closed on return); `name`: how messages begin ("tokenward gateway"); `announce(port)`:
    prints the listening line, once every worker serves. Exits 2 if a worker cannot start."""
    port = held.getsockname()[1]
    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            _child(serve, Worker(index, port, ready_w), (held.fileno(), ready_r), name)
        children[pid] = index

    for index in range(count):
        spawn(index)
    _await_ready(children, ready_r, count, name)
    announce(port)
    _keep_running(children, spawn, name)
    held.close()


def _keep_running(children: dict[int, int], spawn: Callable[[int], None], name: str) -> None:
    """Forward signals to the workers; restart one that exits unless we are stopping."""
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for pid in list(children):
            _signal(pid, signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    last_restart = 0.0
    while children:
        pid, status = os.wait()  # retried after a forwarded signal (PEP 475)
        if pid not in children:
            continue
        index = children.pop(pid)
        if stopping:
            continue
        print(
            f"{name}: worker {index} exited ({_how(status)}); starting it again",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(max(0.0, last_restart + RESTART_PAUSE - time.monotonic()))
        last_restart = time.monotonic()
        spawn(index)


def _child(
    serve: Callable[[Worker], None], worker: Worker, inherited: tuple[int, ...], name: str
) -> None:
    """A forked worker: never returns into the supervisor's code."""
    code = 0
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        serve(worker)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - a worker's end is its exit status
        print(f"{name}: worker failed: {type(exc).__name__}", file=sys.stderr)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _await_ready(children: dict[int, int], ready_r: int, count: int, name: str) -> None:
    """Until every worker serves; a worker that exits first stops the others (exit 2)."""
    deadline = time.monotonic() + START_TIMEOUT
    started = 0
    while started < count:
        readable, _, _ = select.select([ready_r], [], [], 0.1)
        if readable:
            started += len(os.read(ready_r, count - started))
            continue
        pid, _status = os.waitpid(-1, os.WNOHANG)
        if pid or time.monotonic() > deadline:
            children.pop(pid, None)
            if not pid:
                print(f"{name}: the workers did not start in time", file=sys.stderr)
            _stop_all(children)
            raise SystemExit(2)


def _stop_all(children: dict[int, int]) -> None:
    for pid in children:
        _signal(pid, signal.SIGTERM)
    for pid in list(children):
        os.waitpid(pid, 0)
        children.pop(pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone: the wait loop collects its exit
        os.kill(pid, signum)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"
