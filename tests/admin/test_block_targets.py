"""What may be blocked: one unicast address, never empty, garbage, a network, a default route or
loopback; refused alike by both blocklists, the admin API, the console and automatic responses."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.admin.conftest import Console
from tests.admin.test_api import admin_token
from tests.conftest import FrozenClock
from tests.monitor.serving import Monitored
from tokenward.core.blocklist import BlockRefused, blockable_ip
from tokenward.monitor.alerts import Target
from tokenward.monitor.responder import Responder, ResponseError
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.memory_flows import MemorySessionStore
from tokenward.store.redis_blocklist import RedisBlocklist

pytestmark = pytest.mark.anyio

REFUSED = [
    "",
    "   ",
    "not-an-ip",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "198.51.100.0/24",
    "2001:db8::/32",
    "2001:db8::/64",
    "198.51.100.7/24",  # host bits set: neither an address nor a network
    "0.0.0.0",  # noqa: S104 - a target to refuse, not a bind address
    "::",
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "::ffff:127.0.0.1",
    "[::1]",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "1.2.3.4.5",
    "1.2.3.4 5.6.7.8",
    "x" * 100,
]
ACCEPTED = {
    "198.51.100.7": "198.51.100.7",
    " 198.51.100.7 ": "198.51.100.7",
    "198.51.100.7/32": "198.51.100.7",
    "::ffff:198.51.100.7": "198.51.100.7",
    "2001:DB8::1": "2001:db8::1",
    "[2001:db8::1]": "2001:db8::1",
    "2001:db8::1/128": "2001:db8::1",
    "10.1.2.3": "10.1.2.3",  # private addresses are real clients (an inside attacker)
}


@pytest.mark.parametrize("text", REFUSED)
def test_refused_targets(text: str, clock: FrozenClock) -> None:
    with pytest.raises(BlockRefused):
        blockable_ip(text)
    memory = MemoryBlocklist(clock)
    with pytest.raises(BlockRefused):
        memory.block(text, 60, "t", "admin:x")
    assert memory.entries() == []
    shared = RedisBlocklist(Redis(), "tw-test:", clock=clock)  # block() never waits for Redis
    with pytest.raises(BlockRefused):
        shared.block(text, 60, "t", "admin:x")
    assert shared.entries() == []


@pytest.mark.parametrize(("text", "canonical"), ACCEPTED.items())
def test_accepted_targets_are_canonical(text: str, canonical: str, clock: FrozenClock) -> None:
    memory = MemoryBlocklist(clock)
    assert memory.block(text, 60, "t", "admin:x").ip == canonical
    assert memory.is_blocked(canonical)


@pytest.mark.parametrize("text", ["", "not-an-ip", "0.0.0.0/0", "::/0", "127.0.0.1", "10.0.0.0/8"])
async def test_admin_api_answers_400_invalid_request(server: Monitored, text: str) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    refused = await http.post("/admin/api/blocklist", json={"ip": text}, headers=auth)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request"
    assert "address" in refused.json()["error_description"]
    assert server.services.monitor.blocklist.entries() == []


async def test_console_refuses_with_the_reason(console: Console, server: Monitored) -> None:
    await console.get("/admin/alerts")
    refused = await console.post("/admin/alerts", op="block", ip="0.0.0.0/0", seconds="60")
    assert refused.status_code == 400
    assert "not a /0 network" in refused.text
    assert server.services.monitor.blocklist.entries() == []


async def test_an_automatic_block_of_a_refused_target_is_recorded_as_failed(
    clock: FrozenClock,
) -> None:
    blocklist = MemoryBlocklist(clock)
    responder = Responder(
        MemoryRevocationStore(), MemorySessionStore(), blocklist, keep=60, clock=clock
    )
    with pytest.raises(ResponseError, match="loopback"):
        await responder.respond("block_ip", Target(ip="127.0.0.1"), by="monitor:x", reason="t")
    assert blocklist.entries() == []
