"""The verify-side ASGI app: files or an origin, only for validly signed links."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FrozenClock
from tokenward.signedurl import UrlSigner, Verifier
from tokenward.signedurl.asgi import (
    DirectoryBackend,
    OriginBackend,
    SignedContent,
    request_path,
    unsigned_query,
)

BODY = b"0123456789" * 100


@pytest.fixture
def root(tmp_path: Path) -> Path:
    media = tmp_path / "www"
    (media / "v" / "abc").mkdir(parents=True)
    (media / "v" / "abc" / "seg1.ts").write_bytes(BODY)
    (media / "v" / "abc" / "café.txt").write_text("bonjour")
    (tmp_path / "outside.txt").write_text("not yours")
    (media / "v" / "abc" / "escape.txt").symlink_to(tmp_path / "outside.txt")
    return media


def client_for(app: Any, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://cdn.test")


@pytest.fixture
def app(root: Path, verifier: Verifier) -> SignedContent:
    return SignedContent(verifier, DirectoryBackend(root))


@pytest.mark.anyio
async def test_a_signed_link_is_served_with_ranges_and_head(
    app: SignedContent, signer: UrlSigner
) -> None:
    url = signer.sign_url("/v/abc/seg1.ts", ttl=60)
    async with client_for(app) as client:
        full = await client.get(url)
        head = await client.head(url)
        part = await client.get(url, headers={"range": "bytes=10-19"})
    assert full.status_code == 200
    assert full.content == BODY
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(BODY))
    assert part.status_code == 206
    assert part.content == BODY[10:20]


@pytest.mark.anyio
async def test_refusals_carry_the_reason_and_never_the_link(
    app: SignedContent, signer: UrlSigner, clock: FrozenClock
) -> None:
    url = signer.sign_url("/v/abc/seg1.ts", ttl=60)
    signature = url.rsplit("tw_sig=", 1)[1]
    async with client_for(app) as client:
        answers = {
            "missing": await client.get("/v/abc/seg1.ts"),
            "bad_signature": await client.get(url.replace("seg1", "seg2")),
            "malformed": await client.get(url.replace("tw_exp=", "tw_exp=0")),
            "unknown_key": await client.get(url.replace("tw_kid=2025-06", "tw_kid=zzz")),
        }
        clock.advance(60)
        answers["expired"] = await client.get(url)
        post = await client.post(url)
    statuses = {reason: answer.status_code for reason, answer in answers.items()}
    assert statuses == {
        "missing": 403,
        "bad_signature": 403,
        "malformed": 400,
        "unknown_key": 403,
        "expired": 410,
    }
    for reason, answer in answers.items():
        assert answer.json() == {"error": "signed_url_refused", "reason": reason}
        assert answer.headers["cache-control"] == "no-store"
        assert signature not in answer.text
    assert post.status_code == 405


@pytest.mark.anyio
async def test_files_outside_the_root_stay_outside(app: SignedContent, signer: UrlSigner) -> None:
    async with client_for(app) as client:
        symlink = await client.get(signer.sign_url("/v/abc/escape.txt", ttl=60))
        missing = await client.get(signer.sign_url("/v/abc/none.ts", ttl=60))
        directory = await client.get(signer.sign_url("/v/abc/", ttl=60))
        unicode = await client.get(signer.sign_url("/v/abc/café.txt", ttl=60))
    assert symlink.status_code == 404
    assert missing.status_code == 404
    assert directory.status_code == 404
    assert unicode.status_code == 200
    assert unicode.text == "bonjour"


@pytest.mark.anyio
async def test_prefix_links_and_a_published_prefix(
    root: Path, verifier: Verifier, signer: UrlSigner
) -> None:
    app = SignedContent(verifier, DirectoryBackend(root / "v", strip_prefix="/cdn/"))
    grant = signer.sign_prefix("/cdn/abc/", ttl=60)
    async with client_for(app) as client:
        inside = await client.get(grant.url("/cdn/abc/seg1.ts"))
        signed_elsewhere = await client.get(signer.sign_url("/other/abc/seg1.ts", ttl=60))
    assert inside.status_code == 200
    assert signed_elsewhere.status_code == 404


@pytest.mark.anyio
async def test_client_ip_binding_uses_the_peer_address(
    app: SignedContent, signer: UrlSigner
) -> None:
    url = signer.sign_url("/v/abc/seg1.ts", ttl=60, client_ip="203.0.113.5")
    async with client_for(app, "203.0.113.5") as right, client_for(app, "10.0.0.1") as wrong:
        assert (await right.get(url)).status_code == 200
        answer = await wrong.get(url)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "wrong_ip"


async def _streamed(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _origin(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.anyio
async def test_proxying_an_origin(verifier: Verifier, signer: UrlSigner) -> None:
    seen: list[httpx.Request] = []

    def origin(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v/down.ts":
            raise httpx.ConnectError("refused")
        return httpx.Response(
            206,
            content=_streamed(b"pa", b"rt"),  # as a network origin would: not read up front
            headers={"content-range": "bytes 0-3/10", "connection": "close", "x-origin": "1"},
        )

    async with _origin(origin) as upstream:
        app = SignedContent(verifier, OriginBackend("https://origin.internal/", upstream))
        async with client_for(app) as client:
            url = signer.sign_url("/v/abc/seg1.ts?quality=hd", ttl=60)
            response = await client.get(
                url, headers={"range": "bytes=0-3", "authorization": "Bearer x", "cookie": "a=b"}
            )
            down = await client.get(signer.sign_url("/v/down.ts", ttl=60))
    assert response.status_code == 206
    assert response.content == b"part"
    assert response.headers["x-origin"] == "1"
    assert "connection" not in response.headers
    forwarded = seen[0]
    assert str(forwarded.url) == "https://origin.internal/v/abc/seg1.ts?quality=hd"
    assert forwarded.headers["range"] == "bytes=0-3"
    assert "authorization" not in forwarded.headers
    assert "cookie" not in forwarded.headers
    assert down.status_code == 502


@pytest.mark.anyio
async def test_lifespan_and_websocket_scopes(app: SignedContent) -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    sent.clear()
    await app({"type": "websocket", "path": "/x"}, receive, send)  # type: ignore[arg-type]
    assert sent == []


def test_request_path_prefers_the_raw_path() -> None:
    assert request_path({"path": "/a b", "raw_path": b"/a%20b?x=1"}) == "/a%20b"
    assert request_path({"path": "/a/b"}) == "/a/b"
    scope = {"path": "/app/a", "raw_path": b"/a", "root_path": "/app"}
    assert request_path(scope) == "/app/a"  # a proxy stripped the prefix the link was signed with
    assert unsigned_query("a=1&tw_exp=2&&tw%5Fsig=x&b") == "a=1&b"
