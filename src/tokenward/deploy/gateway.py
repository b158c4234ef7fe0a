"""`tokenward gateway --config gateway.yaml`: the entry point `run_gateway` and its wiring.

This is the gateway's composition root: it reads the config (and, in local trust mode, the
tokenward settings), builds trust, audit, metrics and the app, and serves it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from pydantic import ValidationError
from redis.asyncio import Redis
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokenward.config import Settings
from tokenward.core.events import UsageSink
from tokenward.core.lifecycle import Background, cancel_and_wait
from tokenward.datadir import DataDirError
from tokenward.deploy.gateway_feed import GatewayFeed, deployment_namespace, namespace_for
from tokenward.deploy.gateway_local import embedded_trust, local_trust
from tokenward.deploy.gateway_workers import Worker, supervise
from tokenward.deploy.monitor_wiring import open_locator
from tokenward.deploy.namespace import Namespace
from tokenward.deploy.startup import StartupError as SettingsError
from tokenward.gateway.app import Gateway
from tokenward.gateway.audit import AuditLog
from tokenward.gateway.config import ConfigError, GatewayConfig, load_config
from tokenward.gateway.health import AdminListener, Health, admin_app
from tokenward.gateway.metrics import GatewayMetrics
from tokenward.gateway.model import TOKEN_MODES
from tokenward.gateway.reload import Reloader
from tokenward.gateway.startup import (
    GatewayServer,
    Lifespan,
    StartupError,
    StartupFailed,
    bind,
    check_tls,
    url,
)
from tokenward.gateway.tracing import app_for
from tokenward.gateway.trust import TrustError, TrustSetup, build_bff, remote_trust
from tokenward.guard import RevocationMirror
from tokenward.monitor.config import MonitorSettings
from tokenward.monitor.risk import RiskBoard, RiskDetector, RiskScorer
from tokenward.monitor.risk_feed import RiskFeed, Tee
from tokenward.ops.tracing import TracingUnavailable
from tokenward.serving.coalescing import coalescing
from tokenward.serving.express import Express, express_protocol
from tokenward.serving.limits import LimitError
from tokenward.serving.protocol import parser_protocol, server_options
from tokenward.serving.tls import CERT_REQS, ProxyCertificateMiddleware, with_client_certificates
from tokenward.store.redis_bff_sessions import RedisSessionStore
from tokenward.store.redis_blocklist import RedisBlocklist
from tokenward.store.redis_client import connect
from tokenward.store.redis_event_relay import EventRelay
from tokenward.store.redis_idempotency import RedisIdempotencyStore
from tokenward.store.redis_ratelimit import RedisRateLimiter
from tokenward.store.redis_replay import RedisReplayCache
from tokenward.tokens.dpop import FirstUse

__all__ = ["embedded_trust", "run_gateway", "serve_gateway"]  # embedded_trust: docs/gateway.md


def run_gateway(config_path: str | Path, settings: Callable[[], Settings] = Settings) -> None:
    """Serve the gateway until SIGINT/SIGTERM. Anything that stops it from starting (a bad
    config, a busy port, an unreadable certificate, an unreachable issuer or database) is one
    line on stderr naming the setting and the fix, and exit status 2. `settings`: the
    `TOKENWARD_*` settings, read only in `trust.mode: local` (the CLI passes its `--data-dir`)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _refuse(str(exc))
    path = Path(config_path)
    if config.workers > 1:
        try:
            supervise(config, lambda chosen, worker: _serve(chosen, path, settings, worker))
        except StartupError as exc:
            _refuse(f"{config.source}: {exc}")
        return
    _serve(config, path, settings, None)


def _serve(
    config: GatewayConfig, path: Path, settings: Callable[[], Settings], worker: Worker | None
) -> None:
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve_gateway(config, path, settings=settings, worker=worker))
    except (
        TrustError,
        StartupError,
        StartupFailed,
        SettingsError,
        TracingUnavailable,
        LimitError,
    ) as exc:
        _refuse(f"{config.source}: {exc}" if _names_yaml(exc) else str(exc))


def _refuse(message: str) -> NoReturn:
    print(f"tokenward gateway: {message}", file=sys.stderr)
    raise SystemExit(2)


def _names_yaml(exc: Exception) -> bool:
    """Settings of the YAML file are prefixed with its path; TOKENWARD_* ones are not."""
    return not str(exc).startswith("TOKENWARD_")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: about twice the request rate of asyncio's loop on this path
    (docs/gateway.md). We run the loop ourselves (trust is built before serving), so uvicorn's
    own loop choice does not apply."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def build_trust(
    config: GatewayConfig,
    *,
    mirror: RevocationMirror | None = None,
    first_use: FirstUse | None = None,
    settings: Callable[[], Settings] = Settings,
) -> TrustSetup | None:
    if not any(route.auth in TOKEN_MODES for route in config.routes):
        return None
    if config.trust.mode == "local":
        return await local_trust(config, settings)
    return await remote_trust(config.trust, config, mirror=mirror, first_use=first_use)


class Shared:
    """What gateways behind one balancer share: one Redis client (for the revocation feed, the
    DPoP replay cache, idempotency records, rate limits and browser sessions) and the
    revocation feed."""

    def __init__(self, config: GatewayConfig) -> None:
        revocations = config.revocations
        url = revocations.redis_url if revocations is not None else None
        self.redis = connect(url) if url is not None else None
        rate_url = config.rate_limit_redis_url
        self.rate_redis = self.redis
        if rate_url is not None and rate_url != url:
            self.rate_redis = connect(rate_url)
        self.mirror = RevocationMirror() if revocations is not None else None
        self.monitor_redis: Redis | None = None
        issuer = config.trust.issuer or ""
        schema = revocations.database_schema if revocations is not None else None
        self.namespace = Namespace(
            namespace_for(revocations, issuer)
            if revocations is not None
            else deployment_namespace(issuer, schema)
        )
        self.feed = (
            GatewayFeed(revocations, issuer, self.mirror, redis=self.redis)
            if revocations is not None and self.mirror is not None
            else None
        )

    def limiter(self, config: GatewayConfig) -> RedisRateLimiter | None:
        """Rate limits in Redis (exact across gateways) when `rate_limits.redis_url` is set, or
        else the revocations Redis; None: this process's memory."""
        if self.rate_redis is None:
            return None
        prefix = config.rate_limit_redis_prefix or self.namespace.rate_limits
        return RedisRateLimiter(self.rate_redis, prefix)

    def idempotency(self) -> RedisIdempotencyStore | None:
        """Idempotency records in the shared Redis, so a retry that lands on another gateway
        meets the first answer; None: this process's memory."""
        if self.rate_redis is None:
            return None
        return RedisIdempotencyStore(self.rate_redis, self.namespace.idempotency)

    def bff_sessions(self) -> RedisSessionStore | None:
        """Browser-mode sessions in the shared Redis, so any gateway (or worker) serves a
        browser signed in at another; None: this process's memory (one process only)."""
        if self.rate_redis is None:
            return None
        return RedisSessionStore(self.rate_redis, self.namespace.bff_sessions)

    def monitoring(self, config: GatewayConfig) -> tuple[EventRelay | None, RedisBlocklist | None]:
        """With `monitor:`, usage events go to the servers' monitors over a Redis stream, and
        the deployment's blocklist is enforced here; without it, neither."""
        settings = config.monitor
        if settings is None:
            return None, None
        redis = self.redis
        if settings.redis_url is not None:
            redis = self.monitor_redis = connect(settings.redis_url)
        if redis is None:  # config validation requires one Redis URL
            raise StartupError("monitor.redis_url", "no Redis to reach", "set monitor.redis_url")
        namespace = Namespace(settings.namespace) if settings.namespace else self.namespace
        relay = EventRelay(
            redis,
            settings.stream or namespace.usage,
            capacity=settings.buffer,
            interval=settings.interval,
        )
        blocklist = RedisBlocklist(redis, namespace.blocklist) if settings.blocklist else None
        return relay, blocklist

    def first_use(self) -> FirstUse | None:
        """DPoP proofs seen, in the shared Redis: a proof replayed to another gateway, or to
        another worker of this one, is refused there too."""
        redis = self.redis or self.rate_redis
        if redis is None:
            return None
        return RedisReplayCache(redis, prefix=self.namespace.gateway_replay).first_use

    def background(self) -> list[Background]:
        return [self.feed] if self.feed is not None else []

    def clients(self) -> list[Redis]:
        """Every Redis client this gateway opened (for the readiness probe)."""
        candidates = (self.redis, self.rate_redis, self.monitor_redis)
        return [client for client in candidates if client is not None]

    async def close(self) -> None:
        if self.monitor_redis is not None:
            await self.monitor_redis.aclose()
        if self.rate_redis is not None and self.rate_redis is not self.redis:
            await self.rate_redis.aclose()
        if self.redis is not None:
            await self.redis.aclose()


async def serve_gateway(
    config: GatewayConfig,
    path: Path | None = None,
    *,
    settings: Callable[[], Settings] = Settings,
    worker: Worker | None = None,
) -> None:
    """`worker`: this process is one of `workers: N` (deploy/gateway_workers.py): its socket
    shares the port, its metrics listen on `metrics.port` + its index, and it reports ready to
    the supervisor instead of printing the listening line."""
    # Checks and sockets first: a bad certificate or a busy port is reported before the
    # gateway connects to anything (gateway/startup.py says why the sockets are bound here).
    check_tls(config.tls)
    # Everything opened below is closed through `resources`, last opened first: when serving
    # ends by a signal, from inside the server's shutdown (uvicorn then re-raises the signal,
    # which ends the process before this function could clean up); otherwise on the way out.
    async with contextlib.AsyncExitStack() as resources:
        listener = resources.enter_context(
            bind(config.host, worker.port, "listen", reuse_port=True)
            if worker is not None
            else bind(config.host, config.port, "listen")
        )
        metrics_port = config.metrics_port
        if metrics_port and worker is not None:
            metrics_port += worker.index
        admin_socket = (
            resources.enter_context(bind(config.metrics_host, metrics_port, "metrics"))
            if metrics_port is not None
            else None
        )
        shared = Shared(config)
        resources.push_async_callback(shared.close)
        trust = await build_trust(
            config, mirror=shared.mirror, first_use=shared.first_use(), settings=settings
        )
        gateway = await _gateway(config, shared, trust, resources)
        # LimitError (limits: beyond the fd limit) and TracingUnavailable before serving.
        app = served_app(app_for(gateway, config), config)
        server = GatewayServer(uvicorn_config(app, config), resources.aclose)
        # The gateway's lifespan (background start/stop) is driven here rather than by uvicorn,
        # so a background that cannot start is reported as one line (startup.Lifespan).
        server.config.lifespan = "off"
        lifespan = Lifespan(gateway)
        await lifespan.startup()
        resources.push_async_callback(lifespan.shutdown)
        if admin_socket is not None:
            health = Health(
                asyncio.get_running_loop(),
                lambda: lifespan.started and server.started and not server.should_exit,
                mirrors=[trust.validator.revocations] if trust else [],
                redis=[*shared.clients(), *(trust.redis if trust else ())],
            )
            admin = AdminListener(admin_socket, admin_app(gateway.metrics.registry, health))
            admin.start()
            resources.callback(admin.close)
        if path is not None:
            reloader = Reloader(gateway, path)
            reloader.install_sighup()
            resources.push_async_callback(_cancel, asyncio.create_task(reloader.watch()))
        if worker is None:
            print(listening(config, listener, admin_socket), file=sys.stderr, flush=True)
        else:
            worker.ready()
        # Everything built so far lives as long as the process: keep it out of every GC pass.
        gc.collect()
        gc.freeze()
        await server.serve(sockets=[listener])


async def _gateway(
    config: GatewayConfig,
    shared: Shared,
    trust: TrustSetup | None,
    resources: contextlib.AsyncExitStack,
) -> Gateway:
    bff = await build_bff(config, store=shared.bff_sessions())
    try:
        audit = AuditLog.open(config.audit_path)
    except DataDirError as exc:
        raise StartupError(
            "audit.path", str(exc), "point it at a file this user may write, or - for stdout"
        ) from None
    if audit is not None:
        resources.callback(audit.close)
    relay, blocklist = shared.monitoring(config)
    feed, board = local_risk(config)
    usage: UsageSink | None = relay
    if feed is not None:
        usage = Tee(relay, feed) if relay is not None else feed
    companions = [item for item in (relay, blocklist, feed) if item is not None]
    return Gateway(
        config,
        trust.validator if trust else None,
        metrics=GatewayMetrics(),
        audit=audit,
        introspection=trust.introspection if trust else None,
        bff=bff,
        # The trust's own followers first: what relays and blocklists act on must be current.
        background=[*(trust.background if trust else ()), *shared.background(), *companions],
        limiter=shared.limiter(config),
        idempotency=shared.idempotency(),
        usage=usage,
        blocklist=blocklist,
        risk=board,
    )


def local_risk(config: GatewayConfig) -> tuple[RiskFeed | None, RiskBoard | None]:
    """With `monitor: {risk: true}`, this gateway scores its own requests for `context.risk`
    (thresholds from `TOKENWARD_MONITOR_RISK__*`, as the servers read them)."""
    if config.monitor is None or not config.monitor.risk:
        return None, None
    try:
        settings = MonitorSettings()
    except ValidationError as exc:
        raise StartupError(
            "TOKENWARD_MONITOR_RISK", str(exc.errors()[0]["msg"]), "fix the variable"
        ) from None
    risk = settings.risk.model_copy(update={"enabled": True})
    board = RiskBoard(risk.hold, risk.max_entities, time.time)
    detector = RiskDetector(risk, RiskScorer(risk, open_locator(risk.geoip)), board)
    return RiskFeed(detector, capacity=config.monitor.buffer), board


async def _cancel(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)


def listening(config: GatewayConfig, listener: socket.socket, admin: socket.socket | None) -> str:
    """The one line the gateway prints once it listens (on stderr: stdout is the audit log's
    default)."""
    scheme = "https" if config.tls.cert is not None else "http"
    line = f"tokenward gateway listening on {url(scheme, listener)}"
    if admin is not None:
        base = url("http", admin)
        line += f" (metrics on {base}/metrics, health on {base}/healthz and {base}/readyz)"
    return line


def _wrap(config: GatewayConfig, *, coalesce: bool) -> Callable[[type[Any]], type[Any]] | None:
    """The protocol changes: coalesced writes; the TLS client certificate given to the app."""
    certificates = config.tls.client_certs != "none"
    if coalesce and certificates:
        return lambda base: with_client_certificates(coalescing(base))
    if certificates:
        return with_client_certificates
    return coalescing if coalesce else None


def _ws_protocol(config: GatewayConfig) -> str | type[Any]:
    """uvicorn's sans-I/O `websockets` protocol; with client certificates on the listener it
    hands them to the app like the HTTP protocol does, so a certificate-bound token's upgrade
    is checked against the connection's certificate (RFC 8705)."""
    if config.tls.client_certs == "none":
        return "websockets-sansio"
    from uvicorn.protocols.websockets.websockets_sansio_impl import (  # noqa: PLC0415
        WebSocketsSansIOProtocol,
    )

    return with_client_certificates(WebSocketsSansIOProtocol)


def served_app(gateway: ASGIApp, config: GatewayConfig) -> ASGIApp:
    """The gateway, behind the trusted front proxy's certificate header when configured (it
    reads the connection's peer, so it goes outermost, before any X-Forwarded-For rule)."""
    if config.tls.client_cert_header is None:
        return gateway
    return ProxyCertificateMiddleware(
        gateway, header=config.tls.client_cert_header, trusted=config.trusted_proxies
    )


def uvicorn_config(app: ASGIApp, config: GatewayConfig, *, coalesce: bool = True) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ssl_certfile=config.tls.cert,
        ssl_keyfile=config.tls.key,
        ssl_ca_certs=config.tls.client_ca,
        ssl_cert_reqs=CERT_REQS[config.tls.client_certs],
        # The gateway decides whom to believe about X-Forwarded-For (trusted_proxies);
        # uvicorn's own rewriting of the client address would pre-empt that.
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        log_level="warning",
        access_log=False,  # the audit log is the access log, without query strings
        timeout_graceful_shutdown=10,
        # WebSocket upgrades (`websocket:` routes) on uvicorn's sans-I/O `websockets` protocol;
        # a message beyond the largest route limit is refused there (1009), smaller route
        # limits by the relay (gateway/websocket.py). Heads are bounded before the upgrade.
        ws=_ws_protocol(config),
        ws_max_size=max(
            (r.websocket.max_message_bytes for r in config.routes if r.websocket), default=65536
        ),
        # `limits:`: bounded request heads, a head deadline, a connection cap. Two descriptors
        # per connection: the client's and one to the upstream.
        **_protocol_options(config, coalesce=coalesce),
    )


def _protocol_options(config: GatewayConfig, *, coalesce: bool) -> dict[str, Any]:
    options = server_options(
        config.limits, fds_per_connection=2, wrap=_wrap(config, coalesce=coalesce)
    )
    if coalesce:
        options["http"] = with_check_lane(options["http"], config)
    return options


def with_check_lane(protocol: type[Any], config: GatewayConfig) -> type[Any]:
    """`protocol`, with a proxy's checks (nginx auth_request, Traefik forwardAuth: a bodyless
    GET on `authz.path` exactly) served past uvicorn's per-request cycle, to the same app
    (serving/express.py); everything else, proxied requests included, stays `protocol`'s.
    Envoy's checks (the original method, below the path) and every request on a TLS listener
    (whose client certificate the lane does not pass on) stay there too."""
    if config.authz is None or config.tls.cert is not None:
        return protocol
    if parser_protocol() is not HttpToolsProtocol:
        return protocol
    lane = Express(frozenset({("GET", config.authz.path)}), max_body=0)
    return express_protocol(protocol, lane, config.limits)
