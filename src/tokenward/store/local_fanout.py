"""The revocation log's fan-out between the workers of one `tokenward serve --workers N` on
one machine, for the deployments without Redis (SQLite): a worker that writes a revocation
sends one datagram to each other worker's Unix socket, in a directory only the server's user
may enter (the supervisor makes it); a worker that receives one re-reads the log at once.

A datagram carries nothing but "the log grew": the log stays the source of truth, and a lost
datagram (a worker restarting, a full socket buffer) costs only the wait for the periodic
re-read (TOKENWARD_REVOCATION_RESYNC_SECONDS), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

MAX_DRAIN = 64  # datagrams read per wake-up: they all mean the same, one re-read answers them


class LocalFanout:
    def __init__(self, directory: Path, index: int, count: int) -> None:
        self._path = directory / str(index)
        self._siblings = [str(directory / str(other)) for other in range(count) if other != index]
        self._sock: socket.socket | None = None

    def tell(self) -> None:
        """Tell every other worker; never blocks, never raises."""
        if self._sock is None:
            return
        for sibling in self._siblings:
            # Not there (restarting), or its buffer full: its periodic re-read catches up.
            with contextlib.suppress(OSError):
                self._sock.sendto(b"!", sibling)

    async def start(self, on_told: Callable[[], None]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._path.unlink(missing_ok=True)  # a crashed predecessor's
        sock.bind(str(self._path))
        self._sock = sock

        def readable() -> None:
            for _ in range(MAX_DRAIN):
                try:
                    sock.recv(16)
                except BlockingIOError:
                    break
            on_told()

        asyncio.get_running_loop().add_reader(sock.fileno(), readable)

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        self._path.unlink(missing_ok=True)
