"""Sign-in throttling over HTTP: an attacker's failures from one address do not lock the user
out from another; behind trusted proxies each forwarded client counts alone (and is what the
monitor sees), while an untrusted peer's X-Forwarded-For is ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server, running_server
from tests.server.flows import Pkce, authorize_params, hidden_interaction
from tokenward.config import Settings
from tokenward.core.events import AuthEvent
from tokenward.deploy.wiring import memory_stores
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
PROXY = "10.0.0.5"  # the load balancer, inside TOKENWARD_TRUSTED_PROXIES
ATTACKER, ALICE = "203.0.113.66", "198.51.100.7"


@pytest.fixture
async def server(clock: FrozenClock) -> AsyncIterator[Server]:
    settings = Settings(
        issuer=ISSUER, master_key=generate_master_key(), trusted_proxies="10.0.0.0/8, fd00::/8"
    )
    async with running_server(settings, memory_stores(clock), clock) as running:
        yield running


@pytest.fixture
def events(server: Server, monkeypatch: pytest.MonkeyPatch) -> list[AuthEvent]:
    seen: list[AuthEvent] = []
    monkeypatch.setattr(server.services.monitor, "emit", seen.append)
    return seen


async def browser(server: Server, peer: str) -> httpx.AsyncClient:
    """A browser whose TCP peer address (what the server sees) is `peer`."""
    app = server.http._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(peer, 50123))
    return httpx.AsyncClient(transport=transport, base_url=ISSUER)


async def sign_in(http: httpx.AsyncClient, password: str, forwarded: str | None = None) -> int:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    page = await http.get("/authorize", params=authorize_params(Pkce.new()), headers=headers)
    form = {"interaction": hidden_interaction(page.text), "username": "alice", "password": password}
    return (await http.post("/login", data=form, headers=headers)).status_code


async def test_an_attackers_failures_do_not_lock_the_user_out(server: Server) -> None:
    async with await browser(server, ATTACKER) as attacker, await browser(server, ALICE) as alice:
        statuses = [await sign_in(attacker, "guess!!!") for _ in range(6)]
        assert statuses == [401] * 5 + [429]

        assert await sign_in(alice, PASSWORD) == 200  # the consent page: she is signed in
        assert await sign_in(attacker, PASSWORD) == 429  # the attacker stays stopped


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(
    server: Server, events: list[AuthEvent]
) -> None:
    async with await browser(server, PROXY) as proxy:
        statuses = [await sign_in(proxy, "guess!!!", f"{ATTACKER}, 10.1.2.3") for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        # Whatever the attacker writes on the left, the proxies vouch only for its address.
        assert await sign_in(proxy, PASSWORD, f"{ALICE}, {ATTACKER}") == 429

        assert await sign_in(proxy, PASSWORD, ALICE) == 200

    assert {event.ip for event in events} == {ATTACKER}  # the monitor sees the client too


async def test_an_untrusted_peers_forwarded_for_is_ignored(server: Server) -> None:
    async with await browser(server, ATTACKER) as attacker:
        statuses = [
            await sign_in(attacker, "guess!!!", f"192.0.2.{i}")  # a new "client" every time
            for i in range(6)
        ]

    assert statuses == [401] * 5 + [429]


@pytest.mark.parametrize("value", ["10.0.0.0/8, nonsense", "10.0.0.0/33", "proxy.internal"])
def test_a_trusted_proxies_typo_stops_the_server(value: str) -> None:
    with pytest.raises(ValidationError, match="not an IP network"):
        Settings(master_key=generate_master_key(), trusted_proxies=value)


def test_trusted_proxies_are_comma_separated_cidrs() -> None:
    settings = Settings(trusted_proxies=" 10.0.0.0/8,, 192.0.2.1 ,fd00::/8")
    assert [str(net) for net in settings.trusted_networks] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "fd00::/8",
    ]
    assert Settings().trusted_networks == ()
