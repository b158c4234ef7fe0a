"""Revocations pushed to a remote gateway (`revocations:`): the gateway's mirror follows the
issuer's log over the real database (SQLite here) and the machine's Redis; a revocation written
by an authorization server's feed is refused at the gateway within milliseconds, one written
before the gateway started is refused from the first request, and past the staleness bound the
gateway fails closed (503)."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.gateway.conftest import GatewayFactory, Running
from tests.store.redis_server import need_shared_redis
from tokenward.config import Settings
from tokenward.core.records import Revocation, RevocationKind
from tokenward.deploy.gateway_feed import GatewayFeed, deployment_namespace
from tokenward.gateway.config import ConfigError, parse_config
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.store import sql
from tokenward.store.revocation_feed import RevocationFeed
from tokenward.tokens.jws import payload_object, verify_compact
from tokenward.tokens.keyring import Keyring

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
revocations:
  database_url: DATABASE
  redis_url: REDIS
  namespace: NAMESPACE
  resync_seconds: 3600      # only the push (and the start) keep this mirror fresh here
  max_staleness: 30
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
"""


class Issuer:
    """The authorization server's side: its revocation feed over the same log and Redis."""

    def __init__(self, database: str, redis_url: str, namespace: str, clock: FrozenClock) -> None:
        self.database = database
        self.redis_url = redis_url
        self.channel = namespace + ":revocations"
        self.clock = clock

    async def _revoke(self, revocation: Revocation) -> None:
        engine = sql.create_engine(self.database)
        redis = Redis.from_url(self.redis_url)
        try:
            store = sql.SqlRevocationStore(sql.session_factory(engine), self.clock)
            feed = RevocationFeed(store, [], redis=redis, clock=self.clock, channel=self.channel)
            await feed.revoke(revocation)
        finally:
            await redis.aclose()
            await engine.dispose()

    def revoke_jti(self, jti: str) -> None:
        revocation = Revocation(RevocationKind.JTI, jti, None, self.clock() + 3600)
        asyncio.run(self._revoke(revocation))


@pytest.fixture
def issuer(tmp_path: Path, clock: FrozenClock) -> Issuer:
    redis_url = need_shared_redis()
    database = f"sqlite+aiosqlite:///{tmp_path / 'issuer.db'}"

    async def migrate() -> None:
        engine = sql.create_engine(database)
        await sql.migrate(engine)
        await engine.dispose()

    asyncio.run(migrate())
    return Issuer(database, redis_url, "tw-test-" + secrets.token_hex(6), clock)


def start(gateway: GatewayFactory, issuer: Issuer, keyring: Keyring, clock: FrozenClock) -> Running:
    text = (
        CONFIG.replace("DATABASE", issuer.database)
        .replace("REDIS", issuer.redis_url)
        .replace("NAMESPACE", issuer.channel.removesuffix(":revocations"))
    )
    config = parse_config(text.format(upstream="http://x", issuer=ISSUER, audience=AUDIENCE))
    assert config.revocations is not None
    mirror = RevocationMirror()
    feed = GatewayFeed(config.revocations, ISSUER, mirror, clock=clock)
    assert feed.channel == issuer.channel
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        clock=clock,
    )
    return gateway(text, validator=validator, background=[feed])


def _jti(token: str, keyring: Keyring) -> str:
    jws, _ = verify_compact(token, KeyringKeySource(keyring).get)
    return str(payload_object(jws)["jti"])


def test_revocation_at_the_issuer_is_refused_at_the_gateway_within_milliseconds(
    gateway: GatewayFactory, issuer: Issuer, keyring: Keyring, clock: FrozenClock, mint: object
) -> None:
    running = start(gateway, issuer, keyring, clock)
    token = mint()  # type: ignore[operator]
    headers = {"authorization": f"Bearer {token}"}
    assert running.http.get("/items/1", headers=headers).status_code == 200  # cached now
    issuer.revoke_jti(_jti(token, keyring))
    revoked_at = time.monotonic()
    while running.http.get("/items/1", headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < 2.0, "the push did not arrive"
    elapsed = time.monotonic() - revoked_at
    response = running.http.get("/items/1", headers=headers)
    assert response.status_code == 401
    assert running.last_audit()["reason"] == "revoked"
    assert elapsed < 0.5  # pub/sub, not the (hour-long) resync


def test_revocation_before_start_is_applied_at_bootstrap(
    gateway: GatewayFactory, issuer: Issuer, keyring: Keyring, clock: FrozenClock, mint: object
) -> None:
    token = mint()  # type: ignore[operator]
    issuer.revoke_jti(_jti(token, keyring))
    running = start(gateway, issuer, keyring, clock)
    response = running.http.get("/items/1", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert running.last_audit()["reason"] == "revoked"


def test_stale_mirror_fails_closed(
    gateway: GatewayFactory, issuer: Issuer, keyring: Keyring, clock: FrozenClock, mint: object
) -> None:
    running = start(gateway, issuer, keyring, clock)
    headers = {"authorization": f"Bearer {mint()}"}  # type: ignore[operator]
    assert running.http.get("/items/1", headers=headers).status_code == 200
    clock.advance(31)  # past max_staleness without a sync
    response = running.http.get("/items/1", headers=headers)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "1"


def test_config_and_namespace() -> None:
    text = CONFIG.replace("DATABASE", "postgresql+asyncpg://u:pw@db/tw").replace(
        "REDIS", "redis://r:6379/0"
    )
    text = text.replace("  namespace: NAMESPACE\n", "  database_schema: tenant_a\n")
    config = parse_config(text.format(upstream="http://x", issuer=ISSUER, audience=AUDIENCE))
    settings = config.revocations
    assert settings is not None
    assert "pw" not in repr(config)
    assert settings.database_schema == "tenant_a"
    # The authorization servers' own formula (Settings.redis_namespace), same inputs.
    expected = Settings(issuer=ISSUER, database_schema="tenant_a").redis_namespace
    assert deployment_namespace(ISSUER, "tenant_a") == expected
    feed = GatewayFeed(settings, ISSUER, RevocationMirror())
    assert feed.channel == expected + ":revocations"
    asyncio.run(feed.engine.dispose())

    with pytest.raises(ConfigError, match=r"trust\.mode local follows its own revocations"):
        parse_config(
            text.replace("audience: {audience}", "audience: {audience}, mode: local").format(
                upstream="http://x", issuer=ISSUER, audience=AUDIENCE
            )
        )
    with pytest.raises(ConfigError, match="TW_GW_TEST_UNSET_DB is not set"):
        parse_config(
            text.replace(
                "database_url: postgresql+asyncpg://u:pw@db/tw",
                "database_url_env: TW_GW_TEST_UNSET_DB",
            ).format(upstream="http://x", issuer=ISSUER, audience=AUDIENCE)
        )
