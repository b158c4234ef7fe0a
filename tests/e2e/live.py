"""A real uvicorn server on a loopback port, in a thread, for end-to-end tests over HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def stop_process(process: subprocess.Popen[Any], within: float = 15.0) -> None:
    """Stop a process as an operator stops a node (SIGTERM). One still running `within` seconds
    later is killed and reaped, so no live Popen is left for the garbage collector to trip over
    in a later test, and the test fails: a server that ignores SIGTERM is a bug."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise AssertionError(
            f"{process.args!r} did not exit within {within:.0f}s of SIGTERM"
        ) from None


def stop_processes(processes: list[subprocess.Popen[Any]], within: float = 15.0) -> None:
    """SIGTERM to all first (they stop in parallel), then `stop_process` each."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    failures = []
    for process in processes:
        try:
            stop_process(process, within)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError("; ".join(failures))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The event loop of each server serve_in_thread runs, by its base URL.
_LOOPS: dict[str, asyncio.AbstractEventLoop] = {}


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    _LOOPS[base] = loops[0]
    try:
        yield base
    finally:
        _LOOPS.pop(base, None)
        server.should_exit = True
        thread.join(10)


def run_on_server(base: str, coroutine: Any, timeout: float = 30) -> Any:
    """Run `coroutine` on the loop of the server serve_in_thread runs at `base`. A service call
    from a test must not use the server's pooled SQL connections from another loop, nor dispose
    its pool under a request or background task that holds a connection: that connection would
    go back to a discarded pool and be garbage-collected unclosed in some later test."""
    return asyncio.run_coroutine_threadsafe(coroutine, _LOOPS[base]).result(timeout)
