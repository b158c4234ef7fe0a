"""`tokenward gateway --config gateway.yaml`: the entry point `run_gateway` and its wiring.

This is the gateway's composition root: it reads the config (and, in local trust mode, the
tokenward settings), builds trust, audit, metrics and the app, and serves it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from redis.asyncio import Redis
from starlette.types import ASGIApp

from tokenward.config import Settings
from tokenward.gateway.app import Background, Gateway
from tokenward.gateway.audit import AuditLog
from tokenward.gateway.config import ConfigError, GatewayConfig, load_config
from tokenward.gateway.feed import GatewayFeed, deployment_namespace, namespace_for
from tokenward.gateway.metrics import GatewayMetrics
from tokenward.gateway.model import TOKEN_MODES
from tokenward.gateway.reload import Reloader
from tokenward.gateway.serving import http_protocol
from tokenward.gateway.tracing import app_for
from tokenward.gateway.trust import (
    TrustError,
    TrustSetup,
    build_bff,
    build_validator,
    remote_trust,
)
from tokenward.guard import RevocationMirror
from tokenward.monitor.relay import EventRelay, usage_stream
from tokenward.ops.tracing import TracingUnavailable
from tokenward.store.redis_blocklist import RedisBlocklist
from tokenward.store.redis_client import connect
from tokenward.store.redis_idempotency import RedisIdempotencyStore
from tokenward.store.redis_ratelimit import RedisRateLimiter
from tokenward.store.redis_replay import RedisReplayCache
from tokenward.tokens.dpop import FirstUse
from tokenward.tokens.opaque import StoreOpaqueResolver
from tokenward.wiring import Services, build_services, open_stores


def run_gateway(config_path: str | Path) -> None:
    """Serve the gateway until SIGINT/SIGTERM. Exits 2 with a clear message on a bad config."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"tokenward gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve_gateway(config, Path(config_path)))
    except (TrustError, TracingUnavailable) as exc:
        print(f"tokenward gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
) -> TrustSetup | None:
    if not any(route.auth in TOKEN_MODES for route in config.routes):
        return None
    if config.trust.mode == "local":
        return await local_trust(config)
    return await remote_trust(config.trust, config, mirror=mirror, first_use=first_use)


class Shared:
    """What gateways behind one balancer share: one Redis client (for the revocation feed, the
    DPoP replay cache, idempotency records and rate limits) and the revocation feed."""

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
        self.namespace = (
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
        prefix = config.rate_limit_redis_prefix or self.namespace + ":ratelimit:"
        return RedisRateLimiter(self.rate_redis, prefix)

    def idempotency(self) -> RedisIdempotencyStore | None:
        """Idempotency records in the shared Redis, so a retry that lands on another gateway
        meets the first answer; None: this process's memory."""
        if self.rate_redis is None:
            return None
        return RedisIdempotencyStore(self.rate_redis, self.namespace + ":idempotency:")

    def monitoring(self, config: GatewayConfig) -> tuple[EventRelay | None, RedisBlocklist | None]:
        """With `monitor:`, usage events go to the servers' monitors over a Redis stream, and
        the deployment's blocklist is enforced here; without it, neither."""
        settings = config.monitor
        if settings is None:
            return None, None
        redis = self.redis
        if settings.redis_url is not None:
            redis = self.monitor_redis = connect(settings.redis_url)
        assert redis is not None  # noqa: S101 - config validation requires one Redis URL
        namespace = settings.namespace or self.namespace
        relay = EventRelay(
            redis,
            settings.stream or usage_stream(namespace),
            capacity=settings.buffer,
            interval=settings.interval,
        )
        blocklist = RedisBlocklist(redis, namespace + ":") if settings.blocklist else None
        return relay, blocklist

    def first_use(self) -> FirstUse | None:
        if self.redis is None:
            return None
        return RedisReplayCache(self.redis, prefix=self.namespace + ":gateway-replay:").first_use

    def background(self) -> list[Background]:
        return [self.feed] if self.feed is not None else []

    async def close(self) -> None:
        if self.monitor_redis is not None:
            await self.monitor_redis.aclose()
        if self.rate_redis is not None and self.rate_redis is not self.redis:
            await self.rate_redis.aclose()
        if self.redis is not None:
            await self.redis.aclose()


async def local_trust(config: GatewayConfig) -> TrustSetup:
    """Embedded mode: this process loads the issuer's keyring and revocations itself."""
    settings = Settings()
    if settings.issuer != config.trust.issuer:
        raise TrustError(
            f"trust.issuer {config.trust.issuer!r} is not this deployment's issuer "
            f"{settings.issuer!r} (TOKENWARD_ISSUER)"
        )
    services = await build_services(settings, await open_stores(settings))
    return embedded_trust(services, config)


def embedded_trust(services: Services, config: GatewayConfig) -> TrustSetup:
    """Trust the keyring and revocation mirror of an authorization server in this process
    (for mounting the gateway beside `tokenward serve`)."""
    own = services.validator
    opaque = StoreOpaqueResolver(services.stores.access_tokens)
    validator = build_validator(
        config,
        own.keys,
        own.revocations,
        opaque,
        services.clock,
        first_use=services.stores.replay.first_use,
    )
    return TrustSetup(validator, None)


async def serve_gateway(config: GatewayConfig, path: Path | None = None) -> None:
    shared = Shared(config)
    trust = await build_trust(config, mirror=shared.mirror, first_use=shared.first_use())
    bff = await build_bff(config)
    metrics = GatewayMetrics()
    audit = AuditLog.open(config.audit_path)
    relay, blocklist = shared.monitoring(config)
    companions = [item for item in (relay, blocklist) if item is not None]
    gateway = Gateway(
        config,
        trust.validator if trust else None,
        metrics=metrics,
        audit=audit,
        introspection=trust.introspection if trust else None,
        bff=bff,
        background=[*shared.background(), *companions],
        limiter=shared.limiter(config),
        idempotency=shared.idempotency(),
        usage=relay,
        blocklist=blocklist,
    )
    metrics_server = (
        metrics.serve(config.metrics_host, config.metrics_port)
        if config.metrics_port is not None
        else None
    )
    server = uvicorn.Server(uvicorn_config(app_for(gateway, config), config))
    watcher = None
    if path is not None:
        reloader = Reloader(gateway, path)
        reloader.install_sighup()
        watcher = asyncio.create_task(reloader.watch())
    # Everything built so far lives as long as the process: keep it out of every GC pass.
    gc.collect()
    gc.freeze()
    try:
        await server.serve()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if metrics_server is not None:
            metrics_server[0].shutdown()
        if audit is not None:
            audit.close()
        await shared.close()


def uvicorn_config(app: ASGIApp, config: GatewayConfig, *, coalesce: bool = True) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ssl_certfile=config.tls.cert,
        ssl_keyfile=config.tls.key,
        # The gateway decides whom to believe about X-Forwarded-For (trusted_proxies);
        # uvicorn's own rewriting of the client address would pre-empt that.
        proxy_headers=False,
        server_header=False,
        http=http_protocol() if coalesce else "auto",
        lifespan="on",
        log_level="warning",
        access_log=False,  # the audit log is the access log, without query strings
        timeout_graceful_shutdown=10,
    )
