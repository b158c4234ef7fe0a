"""Redis for tests: the machine's server, or a private one on another port for fault tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SHARED_URL = "redis://127.0.0.1:6379/0"


def need_shared_redis() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return SHARED_URL
    except OSError:
        message = (
            "Redis at 127.0.0.1:6379 is not reachable: start it with `redis-server --daemonize yes "
            "--port 6379 --save '' --appendonly no`, or run under CI=true"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class PrivateRedis:
    """A redis-server of our own on a free loopback port, which a test may stop and restart."""

    def __init__(self, directory: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@contextmanager
def private_redis(directory: str) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is needed for Redis fault tests (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
