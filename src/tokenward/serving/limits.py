"""What a client may send before its request is known, how slowly it may send a request body,
and how many connections a process holds.

Defaults, by what widely deployed servers accept:

- `max_header_bytes` 32 KiB for the request line and all header fields together: nginx's
  effective default (`large_client_header_buffers 4 8k`); Node allows 16 KiB, Envoy 60 KiB. A
  bearer JWT, a DPoP proof and session cookies fit with room to spare.
- `max_url_bytes` 8 KiB: nginx answers 414 past one 8 KiB buffer, Apache past 8190 bytes.
- `max_header_fields` 100: Envoy's, Kestrel's and Apache's default.
- `header_timeout` 10 s for a whole head: nginx and Node allow 60 s, which lets a slow client
  hold a connection six times longer; a real client sends its head in one packet.
- `body_timeout` 30 s without a byte of a request body that is still due: nginx's
  `client_body_timeout` is 60 s between reads; a client that means to send its body keeps
  sending. Only bodies: a slow download or a long poll (a request without a body, whose
  answer takes its time) is never cut by it.
- `max_connections` 1024, lowered to what the process's file descriptor limit can carry.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

if sys.platform != "win32":  # Windows has no RLIMIT_NOFILE to read or raise
    import resource

DEFAULT_MAX_CONNECTIONS = 1024
# Descriptors kept out of the connection budget: listening sockets, database and Redis pools,
# the gateway's idle upstream connections, log and audit files.
RESERVED_FDS = 256
# A soft limit raised to an "unlimited" hard limit would be refused by the kernel (nr_open).
UNLIMITED_TARGET = 1 << 16

# Bounds of each setting: (minimum, maximum). Shared with the server's settings and the
# gateway's `limits:` section so both refuse the same values.
BOUNDS: dict[str, tuple[float, float]] = {
    "max_header_bytes": (1024, 1 << 20),
    "max_url_bytes": (256, 1 << 20),
    "max_header_fields": (8, 10_000),
    "header_timeout": (0.1, 600.0),
    "max_connections": (1, 1_000_000),
    "body_timeout": (0.1, 600.0),
}


class LimitError(ValueError):
    """A limit out of bounds, or one the process cannot honour (said at start, not under load).
    `field`: the setting at fault, when one is."""

    def __init__(self, message: str, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.detail = detail or message


@dataclass(frozen=True)
class HeadLimits:
    max_header_bytes: int = 32 * 1024
    max_url_bytes: int = 8 * 1024
    max_header_fields: int = 100
    header_timeout: float = 10.0
    max_connections: int | None = None  # None: DEFAULT_MAX_CONNECTIONS, within the fd limit
    body_timeout: float = 30.0  # idle seconds allowed while a request body is still due

    def __post_init__(self) -> None:
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(value) or not low <= value <= high:
                detail = f"must be between {low:g} and {high:g} (got {value!r})"
                raise LimitError(f"{name} {detail}", name, detail)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (as Go's runtime and systemd's guidance
    do: the low soft default only protects select(), which asyncio and uvloop do not use);
    the soft limit in force afterwards."""
    if sys.platform == "win32":
        return UNLIMITED_TARGET
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have; the budget below follows it
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def connection_limit(limits: HeadLimits, fds_per_connection: int) -> int:
    """How many client connections this process may hold at once, so that file descriptors
    never run out: each costs `fds_per_connection` (the gateway: 2, the client's and one to the
    upstream), beyond RESERVED_FDS. Raises the soft limit first. LimitError when a configured
    value cannot fit."""
    soft = raise_open_files_limit()
    budget = (soft - RESERVED_FDS) // fds_per_connection
    if limits.max_connections is None:
        if budget < 1:
            raise LimitError(f"RLIMIT_NOFILE is {soft}: too low to serve (raise it)")
        return min(DEFAULT_MAX_CONNECTIONS, budget)
    if limits.max_connections > budget:
        needed = limits.max_connections * fds_per_connection + RESERVED_FDS
        raise LimitError(
            f"max_connections {limits.max_connections} needs about {needed} file descriptors, "
            f"but this process may open {soft} (RLIMIT_NOFILE): lower it or raise the limit",
            "max_connections",
        )
    return limits.max_connections
