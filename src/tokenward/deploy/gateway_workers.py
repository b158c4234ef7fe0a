"""`workers: N`: N gateway processes serving one port, under one supervisor.

The supervisor (serving/workers.py, shared with `tokenward serve --workers N`) holds the
port, forks the workers, prints the one listening line, forwards SIGHUP (reload: each worker
re-reads the config) and SIGTERM/SIGINT (graceful shutdown), and restarts a worker that dies
otherwise. A worker that cannot start stops them all with its own one-line message and exit
status 2, as a single process would.

What the workers share goes through Redis (config refuses N > 1 without one): rate limits,
idempotency records, DPoP proofs seen, revocations (each worker follows the feed). What stays
per worker: the token validation cache, introspection answers, Cedar decision caches (caches
of verified facts: a miss costs a check, never a wrong answer), the metrics (each worker
serves its own on `metrics.port` + its index) and the audit buffer (lines are appended whole).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from tokenward.gateway.model import GatewayConfig
from tokenward.gateway.startup import reserve, url
from tokenward.serving import workers
from tokenward.serving.workers import Worker

__all__ = ["Serve", "Worker", "supervise"]

Serve = Callable[[GatewayConfig, Worker], None]


def supervise(config: GatewayConfig, serve: Serve) -> None:
    """Run `serve` in `config.workers` processes until SIGTERM or SIGINT. Raises StartupError
    (the port) before forking; exits 2 if a worker cannot start."""
    held = reserve(config.host, config.port, "listen")
    scheme = "https" if config.tls.cert is not None else "http"
    line = f"tokenward gateway listening on {url(scheme, held)} ({config.workers} workers)"
    workers.supervise(
        held,
        config.workers,
        lambda worker: serve(config, worker),
        name="tokenward gateway",
        announce=lambda _port: print(line, file=sys.stderr, flush=True),
    )
