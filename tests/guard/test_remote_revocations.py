"""RemoteRevocations against the real publisher over a memory log, behind a transport that can
fail on demand: snapshot, long-poll, paging, resets, errors → staleness → 503, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import flask
import httpx
import orjson
import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.core.errors import TemporarilyUnavailable
from tokenward.core.records import Revocation, RevocationKind
from tokenward.core.revocation_wire import KINDS, digest
from tokenward.guard import (
    InvalidToken,
    KeyringKeySource,
    RemoteRevocations,
    RevocationMirror,
    Validator,
)
from tokenward.guard.remote_revocations import FeedError, parse_page
from tokenward.oauth.revocation_publisher import RevocationPublisher, parse_query
from tokenward.resource.flask import bearer_required
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.revocation_feed import RevocationFeed
from tokenward.tokens.jws import parse_compact, payload_object
from tokenward.tokens.keyring import Keyring

pytestmark = pytest.mark.anyio


class FakeServer:
    """GET /revocations answered by the real publisher; `status`/`body` override it."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.replace_log()
        self.status = 200
        self.body: bytes | None = None
        self.requests: list[dict[str, str]] = []

    def replace_log(self) -> None:
        """A new, empty log at the same address (a restore, a new deployment)."""
        self.feed = RevocationFeed(MemoryRevocationStore(), [], clock=self.clock)
        self.publisher = RevocationPublisher(self.feed, self.clock)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/revocations"
        self.requests.append(dict(request.url.params))
        if self.status != 200:
            return httpx.Response(self.status, headers={"retry-after": "0"})
        if self.body is not None:
            return httpx.Response(200, content=self.body)
        query = parse_query(list(request.url.params.multi_items()))
        return httpx.Response(200, json=await self.publisher.answer(query))

    async def revoke(self, kind: str, value: str, before: float | None = None) -> int:
        now = self.clock()
        if kind != RevocationKind.JTI and before is None:
            before = now + 1  # every token minted so far
        return await self.feed.revoke(Revocation(kind, value, before, now + 3600))


@pytest.fixture
def server(clock: FrozenClock) -> FakeServer:
    return FakeServer(clock)


@pytest.fixture
async def remote(server: FakeServer, clock: FrozenClock) -> AsyncIterator[RemoteRevocations]:
    follower = RemoteRevocations(
        ISSUER, wait=1, clock=clock, transport=httpx.MockTransport(server.handle)
    )
    yield follower
    await follower.stop()


@pytest.fixture
def guarded(keyring: Keyring, clock: FrozenClock, remote: RemoteRevocations) -> Validator:
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=remote,
        clock=clock,
    )


async def until(condition: Callable[[], bool], within: float = 5.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def refused(validator: Validator, header: str) -> bool:
    try:
        validator.authenticate_sync(header)
    except InvalidToken:
        return True
    return False


async def test_the_first_miss_waits_for_the_snapshot(
    server: FakeServer, guarded: Validator, mint: Callable[..., str]
) -> None:
    revoked, kept = mint(), mint()
    await server.revoke(RevocationKind.JTI, payload_object(parse_compact(revoked))["jti"])

    with pytest.raises(InvalidToken, match="revoked"):
        await guarded.authenticate("Bearer " + revoked)
    assert (await guarded.authenticate("Bearer " + kept)).sub == "alice"
    assert server.requests[0]["after"] == "0"  # a snapshot first
    assert server.requests[0]["wait"] == "0"


async def test_every_kind_reaches_a_cached_token_by_long_poll(
    server: FakeServer, guarded: Validator, mint: Callable[..., str]
) -> None:
    by_subject = "Bearer " + mint(subject="bob")
    by_session = "Bearer " + mint(session_id="s-1")
    by_client = "Bearer " + mint(client_id="c-9")
    untouched = "Bearer " + mint(subject="carol", client_id="c-2")
    for header in (by_subject, by_session, by_client, untouched):
        await guarded.authenticate(header)  # all cached now
    generation = guarded.revocations.generation

    await asyncio.sleep(1.5)  # long-polls that time out change nothing
    assert guarded.revocations.generation == generation

    await server.revoke(RevocationKind.SUBJECT, "bob")
    await until(lambda: refused(guarded, by_subject))
    await server.revoke(RevocationKind.SESSION, "s-1")
    await until(lambda: refused(guarded, by_session))
    await server.revoke(RevocationKind.CLIENT, "c-9")
    await until(lambda: refused(guarded, by_client))
    assert not refused(guarded, untouched)


async def test_a_held_long_poll_delivers_a_revocation_at_once(
    server: FakeServer, clock: FrozenClock
) -> None:
    async with RemoteRevocations(
        ISSUER, wait=20, clock=clock, transport=httpx.MockTransport(server.handle)
    ) as follower:
        await until(lambda: server.requests[-1]["wait"] == "20")
        await asyncio.sleep(0.1)  # held by now
        await server.revoke(RevocationKind.JTI, "j")
        assert await until(lambda: digest("jti", "j") in follower.jtis) < 2  # not 20


async def test_a_watermark_spares_tokens_issued_after_it(
    server: FakeServer, guarded: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    await server.revoke(RevocationKind.SUBJECT, "alice", before=clock())
    clock.advance(1)
    assert (await guarded.authenticate("Bearer " + mint())).sub == "alice"


async def test_a_long_log_is_read_page_by_page(
    server: FakeServer, remote: RemoteRevocations
) -> None:
    for i in range(2500):
        await server.revoke(RevocationKind.JTI, f"j{i}")
    assert await remote.start()
    assert len(remote.jtis) == 2500
    assert remote.applied_seq == 2500
    assert [r["after"] for r in server.requests[:3]] == ["0", "1000", "2000"]
    assert digest("jti", "j2499") in remote.jtis


async def test_unreachable_feed_turns_stale_then_503_then_recovers(
    server: FakeServer, guarded: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    header = "Bearer " + mint()
    await guarded.authenticate(header)
    server.status = 503
    await until(lambda: server.requests[-1:] != [] and len(server.requests) >= 3)
    assert await guarded.authenticate(header)  # within max_staleness: still vouched for
    clock.advance(31)
    with pytest.raises(TemporarilyUnavailable):
        await guarded.authenticate(header)  # cached, yet refused: fail closed
    with pytest.raises(TemporarilyUnavailable):
        await guarded.authenticate("Bearer " + mint(subject="new"))  # a miss too
    server.status = 200
    await until(lambda: guarded.revocations.fresh_until > clock(), within=8)
    assert (await guarded.authenticate(header)).sub == "alice"


async def test_before_a_first_sync_everything_is_503(
    server: FakeServer, keyring: Keyring, clock: FrozenClock, mint: Callable[..., str]
) -> None:
    server.status = 500
    follower = RemoteRevocations(
        ISSUER, startup_wait=0.2, clock=clock, transport=httpx.MockTransport(server.handle)
    )
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=follower,
        clock=clock,
    )
    try:
        started = time.monotonic()
        with pytest.raises(TemporarilyUnavailable):
            await validator.authenticate("Bearer " + mint())
        assert time.monotonic() - started < 1
        with pytest.raises(TemporarilyUnavailable):  # no second startup wait
            await validator.authenticate("Bearer " + mint())
        assert time.monotonic() - started < 1
    finally:
        await follower.stop()


async def test_a_log_that_restarted_is_read_again_from_the_start(
    server: FakeServer, remote: RemoteRevocations
) -> None:
    for i in range(5):
        await server.revoke(RevocationKind.JTI, f"old-{i}")
    await remote.start()
    assert remote.applied_seq == 5
    server.replace_log()
    await server.revoke(RevocationKind.JTI, "new-1")
    await until(lambda: digest("jti", "new-1") in remote.jtis)
    assert remote.applied_seq == 1
    assert digest("jti", "old-0") in remote.jtis  # kept until it expires: refuse more, not less


async def test_a_malformed_page_applies_nothing_and_keeps_the_cursor(
    server: FakeServer, remote: RemoteRevocations, clock: FrozenClock
) -> None:
    await server.revoke(RevocationKind.JTI, "good")
    await remote.start()
    fresh_until = remote.fresh_until
    server.body = orjson.dumps(
        {
            "head": 3,
            "next": 3,
            "more": False,
            "retry": 0,
            "entries": [
                {
                    "seq": 2,
                    "kind": "jti",
                    "digest": "A" * 43,
                    "issued_before": None,
                    "expires_at": 9e9,
                },
                {
                    "seq": 3,
                    "kind": "jti",
                    "digest": "short",
                    "issued_before": None,
                    "expires_at": 9e9,
                },
            ],
        }
    )
    await until(lambda: len(server.requests) >= 4)
    assert remote.applied_seq == 1
    assert "A" * 43 not in remote.jtis
    assert remote.fresh_until == fresh_until  # not a sync


async def test_more_live_revocations_than_max_entries_fail_closed(
    server: FakeServer, clock: FrozenClock
) -> None:
    for i in range(5):
        await server.revoke(RevocationKind.JTI, f"j{i}")
    follower = RemoteRevocations(
        ISSUER,
        max_entries=4,
        startup_wait=0.5,
        clock=clock,
        transport=httpx.MockTransport(server.handle),
    )
    try:
        assert not await follower.start()
        assert follower.fresh_until == float("-inf")
    finally:
        await follower.stop()


async def test_stop_cancels_and_nothing_restarts_by_itself(
    server: FakeServer, guarded: Validator, remote: RemoteRevocations, mint: Callable[..., str]
) -> None:
    await guarded.authenticate("Bearer " + mint())
    await remote.stop()
    count = len(server.requests)
    await guarded.authenticate("Bearer " + mint(subject="x"))  # a miss: no restart
    await asyncio.sleep(1.2)
    assert len(server.requests) == count


async def test_async_context_manager(server: FakeServer, clock: FrozenClock) -> None:
    await server.revoke(RevocationKind.SESSION, "s")
    async with RemoteRevocations(
        ISSUER, clock=clock, transport=httpx.MockTransport(server.handle)
    ) as follower:
        assert digest("sid", "s") in follower.sessions
        assert follower.staleness() == 0
    assert follower._task is None


def test_synchronous_validation_follows_from_a_thread(
    keyring: Keyring, clock: FrozenClock, mint: Callable[..., str]
) -> None:
    """Behind the Flask decorator: no event loop, so a daemon thread follows."""
    revoked_value = {"revoked": False}

    async def handle(request: httpx.Request) -> httpx.Response:
        if int(request.url.params["wait"]):
            await asyncio.sleep(0.05)  # a short long-poll
        head = 1 if revoked_value["revoked"] else 0  # read once, as the server reads its head
        entries = []
        if head == 1 and int(request.url.params["after"]) < 1:
            entries = [
                {
                    "seq": 1,
                    "kind": "sub",
                    "digest": digest("sub", "alice"),
                    "issued_before": clock() + 1,
                    "expires_at": clock() + 3600,
                }
            ]
        body = {"head": head, "next": head, "more": False, "retry": 0, "entries": entries}
        return httpx.Response(200, json=body)

    follower = RemoteRevocations(ISSUER, clock=clock, transport=httpx.MockTransport(handle))
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=follower,
        clock=clock,
    )
    app = flask.Flask(__name__)

    @app.get("/items")
    @bearer_required("read", validator=validator)
    def items() -> dict[str, str]:
        return {"sub": flask.g.access_token.sub}

    headers = {"authorization": "Bearer " + mint()}
    try:
        with app.test_client() as http:
            assert http.get("/items", headers=headers).json == {"sub": "alice"}
            revoked_value["revoked"] = True
            deadline = time.monotonic() + 5
            while http.get("/items", headers=headers).status_code != 401:
                assert time.monotonic() < deadline, "the revocation never arrived"
                time.sleep(0.01)
    finally:
        follower.close()
    assert follower._thread is not None
    assert not follower._thread.is_alive()


def test_digest_lookups_answer_as_the_plain_mirror_does(clock: FrozenClock) -> None:
    plain, remote = RevocationMirror(), RemoteRevocations(ISSUER, clock=clock)
    now = clock()
    entries = [
        ("jti", "j1", None),
        ("sub", "alice", now),
        ("sid", "s1", now),
        ("client_id", "web", now),
    ]
    for kind, value, before in entries:
        plain.record(kind, value, before, now + 60)
        remote.record(kind, digest(kind, value), before, now + 60)
    for claims in [
        ("j1", "x", None, "c", int(now)),
        ("j2", "alice", None, "c", int(now) - 1),
        ("j2", "alice", None, "c", int(now)),
        ("j2", "x", "s1", "c", int(now) - 1),
        ("j2", "x", "s2", "c", int(now) - 1),
        ("j2", "x", None, "web", int(now) - 1),
        ("j2", "x", None, "web", int(now) + 1),
    ]:
        assert remote.reason(*claims) == plain.reason(*claims)
        assert remote.reason(*claims) == plain.reason(*claims)  # memoised: same answer


def test_the_wire_kinds_are_the_stores() -> None:
    assert frozenset(RevocationKind.ALL) == KINDS


def test_a_long_poll_longer_than_the_staleness_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_staleness"):
        RemoteRevocations(ISSUER, wait=25, max_staleness=20)
    with pytest.raises(ValueError, match="wait"):
        RemoteRevocations(ISSUER, wait=26)


def page(**fields: Any) -> bytes:
    body: dict[str, Any] = {"head": 2, "next": 2, "more": False, "retry": 0, "entries": []}
    body.update(fields)
    return orjson.dumps(body)


def entry(seq: int = 1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seq": seq,
        "kind": "jti",
        "digest": "A" * 43,
        "issued_before": None,
        "expires_at": 2e9,
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"head": 2}',
        page(head=True),
        page(head=-1),
        page(head=2**63),
        page(more="no"),
        page(retry=-1),
        page(entries={}),
        page(entries=[entry(), entry()]),  # not increasing
        page(entries=[entry(seq=0)]),  # not after the cursor
        page(entries=[entry(seq=3)]),  # beyond next
        page(entries=[entry(kind="iss")]),
        page(entries=[entry(digest="A" * 42)]),
        page(entries=[entry(digest="A" * 42 + "=")]),
        page(entries=[entry(issued_before=1.0)]),  # a jti has no watermark
        page(entries=[entry(kind="sub")]),  # a watermark needs one
        page(entries=[entry(expires_at="soon")]),
        page(entries=[entry(expires_at=True)]),
        b'{"head": 2, "next": 2, "more": false, "retry": 0, "entries": [{"seq": 1, "kind": "jti",'
        b' "digest": "' + b"A" * 43 + b'", "issued_before": null, "expires_at": NaN}]}',
        page(next=3),  # beyond the head
        page(more=True, next=2, entries=[entry()]),  # a full page goes on from its last entry
        page(entries=[entry(seq=i + 1) for i in range(1001)], head=2000, next=2000),
        b"[" * 100_000,
    ],
)
def test_malformed_pages_are_refused_whole(body: bytes) -> None:
    with pytest.raises(FeedError):
        parse_page(body, 0)


def test_a_page_for_a_cursor_past_the_head_is_a_reset() -> None:
    parsed = parse_page(page(head=3, next=3), 10)
    assert (parsed.head, parsed.entries) == (3, ())


async def test_an_oversized_answer_is_refused(server: FakeServer, clock: FrozenClock) -> None:
    server.body = b" " * (1024 * 1024 + 1)
    follower = RemoteRevocations(
        ISSUER, startup_wait=0.3, clock=clock, transport=httpx.MockTransport(server.handle)
    )
    try:
        assert not await follower.start()
    finally:
        await follower.stop()


def test_gaps_in_sequence_numbers_are_entries_that_expired() -> None:
    parsed = parse_page(page(head=9, next=9, entries=[entry(seq=2), entry(seq=7)]), 1)
    assert [e[0] for e in parsed.entries] == [2, 7]
    assert parsed.next == 9  # the cursor moves past what was skipped


async def test_expired_entries_on_the_server_do_not_hold_the_cursor_back(
    server: FakeServer, remote: RemoteRevocations, clock: FrozenClock
) -> None:
    await server.feed.revoke(Revocation("jti", "expired", None, clock() - 1))
    await server.revoke(RevocationKind.JTI, "live")
    await server.feed.revoke(Revocation("jti", "expired-too", None, clock() - 1))
    assert await remote.start()
    assert remote.applied_seq == 3
    assert set(remote.jtis) == {digest("jti", "live")}
