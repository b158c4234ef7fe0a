"""GET /revocations through the ASGI app: paging, cursors, long-poll, digests, bad input."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tokenward.config import Settings
from tokenward.core.records import Revocation, RevocationKind
from tokenward.core.revocation_wire import digest
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio


async def revoke(server: Server, kind: str, value: str, expires_in: float = 900) -> int:
    now = server.services.clock()
    before = None if kind == RevocationKind.JTI else now
    return await server.services.revocations.revoke(
        Revocation(kind, value, before, now + expires_in)
    )


async def test_an_empty_log_is_a_page_with_head_zero(server: Server) -> None:
    response = await server.http.get("/revocations")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"head": 0, "next": 0, "more": False, "retry": 1, "entries": []}


async def test_the_snapshot_has_every_live_entry_as_a_digest_and_skips_expired_ones(
    server: Server, clock: FrozenClock
) -> None:
    await revoke(server, RevocationKind.JTI, "expired-jti", expires_in=-1)
    jti = await revoke(server, RevocationKind.JTI, "jti-1")
    sub = await revoke(server, RevocationKind.SUBJECT, "alice-uuid")
    sid = await revoke(server, RevocationKind.SESSION, "session-1")
    client = await revoke(server, RevocationKind.CLIENT, "web")

    body = (await server.http.get("/revocations", params={"after": "0"})).json()

    assert body["head"] == body["next"] == client
    assert body["more"] is False
    assert [(e["seq"], e["kind"]) for e in body["entries"]] == [
        (jti, "jti"),
        (sub, "sub"),
        (sid, "sid"),
        (client, "client_id"),
    ]
    first, second = body["entries"][:2]
    assert first == {
        "seq": jti,
        "kind": "jti",
        "digest": digest("jti", "jti-1"),
        "issued_before": None,
        "expires_at": clock() + 900,
    }
    assert second["issued_before"] == clock()
    text = (await server.http.get("/revocations")).text
    for value in ("jti-1", "alice-uuid", "session-1", '"web"'):
        assert value not in text  # only digests leave the server


async def test_pages_are_bounded_and_the_cursor_walks_them_all(server: Server) -> None:
    seqs = [await revoke(server, RevocationKind.JTI, f"j{i}") for i in range(5)]
    seen, after = [], 0
    while True:
        body = (await server.http.get("/revocations", params={"after": after, "limit": 2})).json()
        assert len(body["entries"]) <= 2
        seen += [entry["seq"] for entry in body["entries"]]
        after = body["next"]
        if not body["more"]:
            break
        assert body["retry"] == 0
    assert seen == seqs
    assert after == seqs[-1]


async def test_a_cursor_past_the_head_gets_the_head_at_once(server: Server) -> None:
    """How a follower learns that the log it followed is not this one (a reset)."""
    head = await revoke(server, RevocationKind.JTI, "j")
    started = time.monotonic()
    body = (await server.http.get("/revocations", params={"after": 99, "wait": 5})).json()
    # Well under the 5 s the long poll would hold it (slack for a loaded machine).
    assert time.monotonic() - started < 3
    assert body["head"] == body["next"] == head
    assert body["entries"] == []


async def test_a_long_poll_wakes_on_a_new_revocation(server: Server) -> None:
    head = await revoke(server, RevocationKind.JTI, "old")
    poll = asyncio.create_task(server.http.get("/revocations", params={"after": head, "wait": 20}))
    await asyncio.sleep(0.2)
    assert not poll.done()  # held: nothing after the cursor yet
    started = time.monotonic()
    seq = await revoke(server, RevocationKind.SESSION, "s-1")
    body = (await poll).json()
    assert time.monotonic() - started < 1
    assert [(e["seq"], e["digest"]) for e in body["entries"]] == [(seq, digest("sid", "s-1"))]
    assert body["next"] == seq
    assert body["retry"] == 0


async def test_a_long_poll_with_nothing_new_answers_when_its_wait_is_over(server: Server) -> None:
    started = time.monotonic()
    body = (await server.http.get("/revocations", params={"wait": 1})).json()
    assert 0.9 < time.monotonic() - started < 3
    assert body == {"head": 0, "next": 0, "more": False, "retry": 0, "entries": []}


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=abc",
        "after=1e3",
        "after=",
        "after=%EF%BC%91",  # a fullwidth digit one
        "after=99999999999999999999",
        "after=9223372036854775808",
        "limit=0",
        "limit=1001",
        "wait=26",
        "wait=1.5",
        "after=1&after=2",
        "&".join(f"x{i}=1" for i in range(9)),
    ],
)
async def test_bad_input_is_invalid_request(server: Server, query: str) -> None:
    response = await server.http.get("/revocations?" + query)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_unknown_parameters_are_ignored(server: Server) -> None:
    response = await server.http.get("/revocations", params={"after": 0, "format": "x"})
    assert response.status_code == 200


async def test_discovery_names_the_feed(server: Server) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        document = (await server.http.get(path)).json()
        assert document["tokenward_revocation_feed_endpoint"] == ISSUER + "/revocations"


async def test_an_operator_can_turn_the_feed_off(clock: FrozenClock) -> None:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), revocation_feed=False)
    services = await build_services(settings, memory_stores(clock), clock)
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        assert (await http.get("/revocations")).status_code == 404
        document = (await http.get("/.well-known/openid-configuration")).json()
    assert "tokenward_revocation_feed_endpoint" not in document
