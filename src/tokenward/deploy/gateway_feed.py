"""Revocations pushed to a remote gateway: its validator's mirror follows the issuer's log.

The authorization servers write every revocation to their database (the truth) and publish it
on Redis; here a `RevocationFeed` over the same database bootstraps the mirror at start,
applies each pushed entry within milliseconds, re-reads the log on a gap, on reconnect and
every `resync_seconds`, and marks the mirror stale past `max_staleness` without a sync (the
validator then answers 503 `temporarily_unavailable`, unless `fail_open`).

The channel and key names are the deployment's: `Settings.redis_namespace` computed from the
issuer and the database schema exactly as the authorization servers compute it, so a gateway
configured with the same `trust.issuer` and `database_schema` hears the same channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy.exc import ArgumentError

from tokenward.deploy.namespace import Namespace
from tokenward.gateway.model import RevocationSettings
from tokenward.gateway.startup import StartupError
from tokenward.guard import RevocationMirror
from tokenward.store import sql
from tokenward.store.redis_client import connect
from tokenward.store.revocation_feed import RevocationFeed


def deployment_namespace(issuer: str, database_schema: str | None) -> str:
    """The authorization servers' `settings.redis_namespace`, from the same two inputs (built
    without reading the environment: this process is not configured by TOKENWARD_*)."""
    return Namespace.derived(issuer, database_schema).root


def namespace_for(settings: RevocationSettings, issuer: str) -> str:
    return settings.namespace or deployment_namespace(issuer, settings.database_schema)


class GatewayFeed:
    """Owns the database engine, the Redis client and the feed; started and stopped with the
    gateway's lifespan (connections are made in the serving event loop, on start)."""

    def __init__(
        self,
        settings: RevocationSettings,
        issuer: str,
        mirror: RevocationMirror,
        *,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self.engine = sql.create_engine(settings.database_url, schema=settings.database_schema)
        except (ValueError, ArgumentError):
            raise StartupError(
                "revocations.database_url",
                "is not a database URL tokenward can use",
                "give postgresql+asyncpg://user@host:5432/db or sqlite+aiosqlite:///path "
                "(database_schema only with PostgreSQL)",
            ) from None
        self._own_redis = redis is None and settings.redis_url is not None
        if redis is None and settings.redis_url is not None:
            redis = connect(settings.redis_url)
        self.redis = redis
        self.channel = Namespace(namespace_for(settings, issuer)).revocations
        self.feed = RevocationFeed(
            sql.SqlRevocationStore(sql.session_factory(self.engine), clock),
            [mirror],
            redis=redis,
            clock=clock,
            resync_interval=settings.resync_seconds,
            max_staleness=settings.max_staleness,
            fail_open=settings.fail_open,
            channel=self.channel,
        )
        # Until the first sync the mirror vouches for nothing: a request before start() fails
        # closed rather than pass on an empty denylist.
        mirror.fresh_until = float("-inf")

    async def start(self) -> None:
        try:
            await self.feed.start()
        except Exception as exc:
            await self._close()
            raise StartupError(
                "revocations.database_url",
                f"cannot read the issuer's revocation log ({type(exc).__name__})",
                "check that the database is up and that database_url and database_schema are "
                "the issuer's TOKENWARD_DATABASE_URL and TOKENWARD_DATABASE_SCHEMA",
            ) from exc

    async def stop(self) -> None:
        await self.feed.stop()
        await self._close()

    async def _close(self) -> None:
        if self.redis is not None and self._own_redis:
            await self.redis.aclose()
        await self.engine.dispose()
