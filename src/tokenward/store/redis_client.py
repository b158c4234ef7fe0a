"""The one way tokenward opens a Redis client: bounded waits and a short, safe retry.

redis-py's defaults would let an unresponsive Redis hold a request (a /revoke, a rate-limit
decision) for as long as the kernel keeps the socket, and retry three times with backoff of up
to seconds on top. Here every command waits at most `SOCKET_TIMEOUT`; the caller then fails
closed (503) or defers, as its module documents.

The retry is once, at once, and only on a broken connection: after a Redis restart every pooled
connection is dead, and the first command on each would otherwise fail although the server is
back. A timeout is not retried: the command may have run, and the Lua scripts that count (rate
limits, idempotency records) must not run twice. Blocking pub/sub reads are not subject to the
socket timeout (redis-py reads them without one); keepalive finds a dead peer there.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

SOCKET_TIMEOUT = 1.0  # seconds a command (or a connect) may take before it counts as failed
HEALTH_CHECK_INTERVAL = 15  # seconds idle after which a pooled connection is PINGed before use


def connect(url: str, *, timeout: float = SOCKET_TIMEOUT) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://); connects lazily, on first use."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
