"""`tokenward serve`: one process, or `--workers N` processes sharing the port.

With N workers the parent checks everything a single process would (settings, database,
migrations, master key, first keys: one line and exit 2 on a problem) before it forks, so
the workers start on a migrated database with its keys, and it holds the port for them
(serving/workers.py: SO_REUSEPORT, graceful SIGTERM, a crashed worker restarted). Each
worker is wired like a node of a multi-node deployment; what each holds and how they agree
is in docs/deployment.md "Workers".
"""

from __future__ import annotations

import gc
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import typer
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokenward.config import Settings
from tokenward.deploy import startup
from tokenward.deploy.deployment import server_app
from tokenward.deploy.startup import StartupError
from tokenward.ops.tracing import TracingUnavailable
from tokenward.server.access_log import AccessLog
from tokenward.server.app import direct_routes
from tokenward.server.outer import uvicorn_log_config
from tokenward.server.serving import Server
from tokenward.serving import loop as serving_loop
from tokenward.serving import workers
from tokenward.serving.coalescing import coalescing
from tokenward.serving.express import Express, express_protocol
from tokenward.serving.limits import LimitError
from tokenward.serving.protocol import parser_protocol, server_options
from tokenward.serving.tls import with_client_certificates
from tokenward.store.local_fanout import LocalFanout

Failed = Callable[[StartupError], None]


def serve(settings: Settings, host: str, port: int, failed: Failed) -> None:
    """Serve until SIGTERM/SIGINT; `failed` prints a StartupError and exits 2."""
    try:
        if settings.workers == 1:
            serving_loop.run(_main(settings, host, port, None))
            return
        serving_loop.run(_check(settings))  # the loop is closed before any fork
        held = startup.reserve(host, port)
    except StartupError as exc:
        failed(exc)
        return
    except (TracingUnavailable, LimitError) as exc:
        failed(_startup_error(exc))
        return
    # Without Redis the workers tell each other of revocations through Unix sockets here.
    with tempfile.TemporaryDirectory(prefix="tokenward-workers-") as fanout:
        workers.supervise(
            held,
            settings.workers,
            lambda worker: _worker(settings, host, worker, failed, Path(fanout)),
            name="tokenward serve",
            announce=lambda chosen: _listening(settings, host, chosen),
        )


def _listening(settings: Settings, host: str, port: int) -> None:
    """On stdout, as a single process prints it, once every worker serves."""
    if settings.redis_url:
        typer.echo(f"redis_namespace={settings.redis_namespace}")
    typer.echo(f"listening on {host}:{port}, issuer {settings.issuer} ({settings.workers} workers)")


def _worker(
    settings: Settings, host: str, worker: workers.Worker, failed: Failed, fanout: Path
) -> None:
    """One forked worker: wired like a node, its log lines marked `[worker N]`."""
    structlog.contextvars.bind_contextvars(worker=worker.index)
    siblings = None if settings.redis_url else LocalFanout(fanout, worker.index, settings.workers)
    try:
        serving_loop.run(_main(settings, host, worker.port, worker, siblings))
    except StartupError as exc:
        failed(exc)
    except (TracingUnavailable, LimitError) as exc:
        failed(_startup_error(exc))


async def _check(settings: Settings) -> None:
    """What every worker would check at start, once, before the fork: a problem is one line."""
    services = await startup.open_services(settings)
    await services.stores.aclose()


async def _main(
    settings: Settings,
    host: str,
    port: int,
    worker: workers.Worker | None,
    siblings: LocalFanout | None = None,
) -> None:
    sock = startup.listen(host, port, reuse_port=worker is not None)
    try:
        services = await startup.open_services(settings, siblings=siblings)
    except BaseException:
        sock.close()
        raise
    try:
        if worker is None:
            if settings.redis_url:
                # What gateways put in `revocations.namespace` / `monitor.namespace` when they
                # cannot derive it (docs/gateway.md).
                typer.echo(f"redis_namespace={settings.redis_namespace}")
            typer.echo(f"listening on {host}:{port}, issuer {settings.issuer}")
        tls = settings.tls_settings()
        index = worker.index if worker is not None else None
        access = AccessLog(sys.stdout, worker=index)
        app = server_app(services, worker=index, access_log=access)
        options = server_options(
            settings.head_limits(),
            fds_per_connection=1,
            # Head and body of an answer in one write; client certificates reach the app
            # as the ASGI TLS extension.
            wrap=_protocol_wrap(certificates=bool(tls and tls.cert_reqs != "none")),
        )
        if tls is None and parser_protocol() is HttpToolsProtocol:
            # Plain requests to /token and /introspect past uvicorn's per-request cycle, to
            # the same app; everything else to uvicorn's guarded protocol (serving/express.py).
            options["http"] = express_protocol(
                options["http"],
                Express(direct_routes(app), settings.max_body_bytes),
                settings.head_limits(),
            )
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,  # ours (server/outer.py) never prints a query
            log_config=uvicorn_log_config(index),
            proxy_headers=False,
            server_header=False,
            # Bounded request heads, a head deadline, a connection cap (TOKENWARD_MAX_*).
            **options,
            **(tls.uvicorn_options() if tls else {}),
        )
        server = Server(
            config,
            services.revocation_publisher.close,
            on_started=worker.ready if worker is not None else None,
            # The lines of the last half second, and of the requests the shutdown let finish:
            # after a signal the process ends inside `serve()` (server/serving.py).
            after_shutdown=access.flush,
        )
        # Everything built so far lives as long as the process: keep it out of every GC pass
        # (the gateway does the same; a full pass over the startup heap is a latency spike).
        gc.collect()
        gc.freeze()
        await server.serve(sockets=[sock])
    finally:
        await services.stores.aclose()


def _protocol_wrap(*, certificates: bool) -> Callable[[type[Any]], type[Any]]:
    if certificates:
        return lambda base: with_client_certificates(coalescing(base))
    return coalescing


def _startup_error(exc: Exception) -> StartupError:
    if isinstance(exc, TracingUnavailable):  # TOKENWARD_OTEL_ENABLED without the otel extra
        return StartupError(f"TOKENWARD_OTEL_ENABLED: {exc}")
    return StartupError(str(exc))  # TOKENWARD_MAX_CONNECTIONS does not fit the fd limit
