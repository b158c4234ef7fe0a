"""How the composition root builds dynamic client registration: with Redis, every node counts
registrations in one allowance per address (two nodes here, one Redis); without, each process."""

from __future__ import annotations

import secrets

import pytest

from tests.store.redis_server import need_shared_redis
from tokenward.config import Settings
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.oauth.errors import TooManyRequests
from tokenward.store.redis_client import connect
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
METADATA = {"grant_types": ["client_credentials"], "scope": "read"}


async def _node(settings: Settings, redis_url: str | None) -> Services:
    stores = memory_stores()
    if redis_url is not None:
        stores.redis = connect(redis_url)
        stores.closers.append(stores.redis.aclose)
    return await build_services(settings, stores)


def _settings(master_key: str) -> Settings:
    return Settings(
        # A fresh issuer: a namespace (and so an allowance) of its own in the shared Redis.
        issuer=f"https://auth-{secrets.token_hex(4)}.example",
        master_key=master_key,
        registration="open",
        registration_scopes="read",
        registration_rate="2/h",
    )


@pytest.mark.redis
async def test_nodes_sharing_redis_share_the_registration_allowance() -> None:
    url = need_shared_redis()
    settings = _settings(generate_master_key())
    first, second = await _node(settings, url), await _node(settings, url)
    try:
        await first.registration.register(METADATA, None, "192.0.2.7")
        await second.registration.register(METADATA, None, "192.0.2.7")
        with pytest.raises(TooManyRequests) as refused:
            await first.registration.register(METADATA, None, "192.0.2.7")
        # Another address has an allowance of its own.
        await second.registration.register(METADATA, None, "192.0.2.8")
    finally:
        await first.stores.aclose()
        await second.stores.aclose()
    assert int(refused.value.headers["retry-after"]) > 0


async def test_without_redis_each_process_counts_alone() -> None:
    settings = _settings(generate_master_key())
    first, second = await _node(settings, None), await _node(settings, None)

    for _ in range(2):
        await first.registration.register(METADATA, None, "192.0.2.7")
        await second.registration.register(METADATA, None, "192.0.2.7")
    with pytest.raises(TooManyRequests):
        await second.registration.register(METADATA, None, "192.0.2.7")
