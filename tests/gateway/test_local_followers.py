"""The background work local trust owns, in process: key reloads on a schedule and on an
unknown kid (bounded), and a mirror that vouches for nothing until the feed has synced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tokenward.config import Settings
from tokenward.deploy.gateway_local import LocalTrust
from tokenward.deploy.wiring import Services, build_services, open_stores
from tokenward.guard import KeyringKeySource
from tokenward.tokens.keyring import KeyPolicy, Keyring
from tokenward.tokens.sealing import generate_master_key


async def _services(settings: Settings) -> Services:
    return await build_services(settings, await open_stores(settings))


@pytest.mark.anyio
async def test_local_trust_reloads_keys_rotated_elsewhere(tmp_path: Path) -> None:
    settings = Settings(
        issuer="https://as.example", master_key=generate_master_key(), data_dir=tmp_path
    )
    server, gateway = await _services(settings), await _services(settings)
    local = LocalTrust(gateway, key_interval=0.05)
    assert gateway.validator.revocations.fresh_until == float("-inf")  # until the first sync
    await local.start()
    try:
        assert gateway.validator.revocations.fresh_until > time.time()
        for _ in range(2):  # the second makes active a key the gateway never loaded
            await server.keys.rotate(force=True)
        kid = server.keys.keyring.active().kid  # only a reload by the schedule brings it
        deadline = time.monotonic() + 3
        while gateway.keys.keyring.verification_key(kid) is None:
            assert time.monotonic() < deadline, "the rotated key never reached the gateway"
            await asyncio.sleep(0.02)  # bounded poll for the schedule's next reload
    finally:
        await local.stop()
        await server.stores.aclose()
        await gateway.stores.aclose()


@pytest.mark.anyio
async def test_unknown_kid_reloads_at_most_once_per_interval() -> None:
    now = [100.0]
    calls = []

    async def reload() -> None:
        calls.append(now[0])

    ring = Keyring(KeyPolicy(algorithm="ES256"), lambda: now[0])
    ring.ensure_ready()
    source = KeyringKeySource(ring, reload, min_interval=5.0, clock=lambda: now[0])
    assert await source.refresh(unknown_kid=False) is False  # max-age refreshes: never here
    assert await source.refresh(unknown_kid=True) is False  # reloaded, but nothing new
    assert await source.refresh(unknown_kid=True) is False  # within the interval: no reload
    now[0] += 5.0
    await source.refresh(unknown_kid=True)
    assert calls == [100.0, 105.0]
    assert source.refresh_sync(unknown_kid=True) is False  # no blocking read on that path
    assert await KeyringKeySource(ring).refresh(unknown_kid=True) is False  # no reload given
