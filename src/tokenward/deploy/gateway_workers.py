"""`workers: N`: N gateway processes serving one port, under one supervisor.

The supervisor holds the port (bound with SO_REUSEPORT, never listening, so a port of 0 is
chosen once and no connection waits on a socket nobody accepts from), forks the workers
before any event loop or thread exists, and waits until each has bound its own SO_REUSEPORT
socket and started: the kernel then spreads new connections over them. It prints the one
listening line, forwards SIGHUP (reload: each worker re-reads the config) and SIGTERM/SIGINT
(graceful shutdown: each worker stops accepting, finishes its requests in flight and exits),
and restarts a worker that dies otherwise. A worker that cannot start stops them all with its
own one-line message and exit status 2, as a single process would.

What the workers share goes through Redis (config refuses N > 1 without one): rate limits,
idempotency records, DPoP proofs seen, revocations (each worker follows the feed). What stays
per worker: the token validation cache, introspection answers, Cedar decision caches (caches
of verified facts: a miss costs a check, never a wrong answer), the metrics (each worker
serves its own on `metrics.port` + its index) and the audit buffer (lines are appended whole).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from tokenward.gateway.model import GatewayConfig
from tokenward.gateway.startup import reserve, url

START_TIMEOUT = 120.0  # seconds for every worker to start, on a loaded machine
RESTART_PAUSE = 1.0  # at least this long between two restarts of crashed workers


class Worker:
    """One worker's place: its index and how it tells the supervisor it is serving."""

    def __init__(self, index: int, port: int, ready_fd: int) -> None:
        self.index = index
        self.port = port  # the supervisor's: `listen.port` as given may be 0 (any free port)
        self._ready_fd = ready_fd

    def ready(self) -> None:
        os.write(self._ready_fd, b"!")
        os.close(self._ready_fd)


Serve = Callable[[GatewayConfig, Worker], None]


def supervise(config: GatewayConfig, serve: Serve) -> None:
    """Run `serve` in `config.workers` processes until SIGTERM or SIGINT. Raises StartupError
    (the port) before forking; exits 2 if a worker cannot start."""
    held = reserve(config.host, config.port, "listen")
    port = held.getsockname()[1]
    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            _child(serve, config, Worker(index, port, ready_w), (held.fileno(), ready_r))
        children[pid] = index

    for index in range(config.workers):
        spawn(index)
    _await_ready(children, ready_r, config.workers)
    scheme = "https" if config.tls.cert is not None else "http"
    line = f"tokenward gateway listening on {url(scheme, held)} ({config.workers} workers)"
    print(line, file=sys.stderr, flush=True)
    _keep_running(children, spawn)
    held.close()


def _keep_running(children: dict[int, int], spawn: Callable[[int], None]) -> None:
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
            f"tokenward gateway: worker {index} exited ({_how(status)}); starting it again",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(max(0.0, last_restart + RESTART_PAUSE - time.monotonic()))
        last_restart = time.monotonic()
        spawn(index)


def _child(serve: Serve, config: GatewayConfig, worker: Worker, inherited: tuple[int, ...]) -> None:
    """A forked worker: never returns into the supervisor's code."""
    code = 0
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        serve(config, worker)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - a worker's end is its exit status
        print(f"tokenward gateway: worker failed: {type(exc).__name__}", file=sys.stderr)
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _await_ready(children: dict[int, int], ready_r: int, count: int) -> None:
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
                print("tokenward gateway: the workers did not start in time", file=sys.stderr)
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
