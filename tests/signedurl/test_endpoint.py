"""The FastAPI routes with real signed bearer tokens: one bearer check buys signed links."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import FrozenClock
from tests.signedurl.conftest import NOW
from tests.signedurl.test_hls import MASTER
from tokenward.guard import Validator
from tokenward.resource.fastapi import install_bearer_error_handler
from tokenward.signedurl import KeySet, Reason, UrlSigner, Verifier
from tokenward.signedurl.endpoint import MediaPolicy, signed_media_router
from tokenward.signedurl.sources import DirectorySource, OriginSource, PlaylistSource

VARIANT = (
    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
    "#EXTINF:4.0,\nseg1.ts\n#EXTINF:4.0,\nseg2.ts\n#EXT-X-ENDLIST\n"
)
Mint = Callable[..., str]
SIGNED = re.compile(r"http[s]?://[a-z.]+/[^\"\s]*tw_sig=[A-Za-z0-9_-]{43}")


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    for folder in ("v/abc/540p", "v/abc/1080p", "v/abc/audio/en", "v/abc/subs", "v/shared/audio"):
        (root / folder).mkdir(parents=True)
    (root / "v/abc/master.m3u8").write_text(MASTER)
    for name in ("540p/index", "1080p/index", "audio/en/index", "subs/en", "540p/iframes"):
        (root / f"v/abc/{name}.m3u8").write_text(VARIANT)
    (root / "v/abc/broken.m3u8").write_bytes(b"#EXTM3U\n\xff\xfe\n")
    (root / "v/abc/not-a-playlist.m3u8").write_text("<html>oops</html>\n")
    (root / "secret.m3u8").write_text(VARIANT)
    return root


def build(
    source: PlaylistSource,
    validator: Validator,
    keys: KeySet,
    clock: FrozenClock,
    **policy: object,
) -> FastAPI:
    app = FastAPI()
    install_bearer_error_handler(app)
    router = signed_media_router(
        signer=UrlSigner(keys, clock=clock),
        verifier=Verifier(keys, clock=clock),
        source=source,
        policy=MediaPolicy(media_origin="https://cdn.example", asset_prefix="/v/", **policy),  # type: ignore[arg-type]
        validator=validator,
    )
    app.include_router(router, prefix="/media")
    return app


def client_for(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
def app(media: Path, validator: Validator, keys: KeySet, clock: FrozenClock) -> FastAPI:
    return build(DirectorySource(media), validator, keys, clock)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": "Bearer " + token}


@pytest.mark.anyio
async def test_a_bearer_call_buys_a_cdn_link(app: FastAPI, mint: Mint, verifier: Verifier) -> None:
    token = mint(scopes=("media:read",))
    async with client_for(app) as client:
        response = await client.get("/media/url/v/abc/540p/seg1.ts", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["url"].startswith("https://cdn.example/v/abc/540p/seg1.ts?tw_exp=1800000300&")
    assert body["expires"] == NOW + 300
    assert verifier.verify_url(body["url"]).ok
    assert token not in response.text


@pytest.mark.anyio
async def test_bearer_refusals(app: FastAPI, mint: Mint) -> None:
    async with client_for(app) as client:
        missing = await client.get("/media/url/v/abc/540p/seg1.ts")
        narrow = await client.get(
            "/media/url/v/abc/540p/seg1.ts", headers=bearer(mint(scopes=("read",)))
        )
        playlist = await client.get("/media/hls/v/abc/master.m3u8")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="tokenward"'
    assert narrow.status_code == 403
    assert narrow.json()["error"] == "insufficient_scope"
    assert playlist.status_code == 401


@pytest.mark.anyio
async def test_a_player_follows_signed_links_from_master_to_segments(
    app: FastAPI, mint: Mint, verifier: Verifier
) -> None:
    token = mint(scopes=("media:read",))
    async with client_for(app) as client:
        start = (await client.get("/media/url/v/abc/master.m3u8", headers=bearer(token))).json()
        assert start["url"].startswith("http://api.test/media/hls/v/abc/master.m3u8?tw_exp=")
        assert start["expires"] == NOW + 4 * 3600  # playlists last the viewing session
        master = await client.get(start["url"])  # a native player: no Authorization header
        assert master.status_code == 200
        assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert master.headers["cache-control"] == "no-store"
        variants = SIGNED.findall(master.text)
        assert [url.split("?")[0] for url in variants] == [
            "http://api.test/media/hls/v/abc/audio/en/index.m3u8",
            "http://api.test/media/hls/v/shared/audio/fr.m3u8",
            "http://api.test/media/hls/v/abc/subs/en.m3u8",
            "http://api.test/media/hls/v/abc/540p/index.m3u8",
            "http://api.test/media/hls/v/abc/1080p/index.m3u8",
            "http://api.test/media/hls/v/abc/540p/iframes.m3u8",
        ]
        variant = await client.get(variants[3])
    assert variant.status_code == 200
    segments = SIGNED.findall(variant.text)
    assert [url.split("?")[0] for url in segments] == [
        "https://cdn.example/v/abc/540p/seg1.ts",
        "https://cdn.example/v/abc/540p/seg2.ts",
    ]
    for url in segments:
        verdict = verifier.verify_url(url)
        assert verdict.expires == NOW + 120 + 8  # short TTL plus the media's duration
    for url in variants:
        # Children inherit the signed link's expiry: a chain never outlives the bearer grant.
        assert verifier.verify_url(url).expires == start["expires"]


@pytest.mark.anyio
async def test_a_bearer_can_fetch_a_playlist_directly(app: FastAPI, mint: Mint) -> None:
    async with client_for(app) as client:
        response = await client.get(
            "/media/hls/v/abc/540p/index.m3u8", headers=bearer(mint(scopes=("media:read",)))
        )
    assert response.status_code == 200
    assert len(SIGNED.findall(response.text)) == 2


@pytest.mark.anyio
async def test_signed_playlist_links_fail_with_their_reason(
    app: FastAPI, mint: Mint, clock: FrozenClock
) -> None:
    token = mint(scopes=("media:read",))
    async with client_for(app) as client:
        link = (await client.get("/media/url/v/abc/master.m3u8", headers=bearer(token))).json()
        url = link["url"]
        tampered = await client.get(url.replace("master.m3u8", "secret.m3u8"))
        moved = await client.get(url.replace("/v/abc/", "/v/abd/"))
        clock.advance(4 * 3600)
        expired = await client.get(url)
    assert tampered.status_code == 403
    assert tampered.json() == {"error": "signed_url_refused", "reason": "bad_signature"}
    assert moved.status_code == 403
    assert expired.status_code == 410
    assert expired.json()["reason"] == Reason.EXPIRED.value
    assert expired.headers["cache-control"] == "no-store"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/media/url/v/%2e%2e/secret.m3u8", 400),
        ("/media/url/secret.m3u8", 404),  # outside the published prefix
        ("/media/url/v/a%252e.ts", 400),  # double encoding
        ("/media/hls/v/abc/missing.m3u8", 404),
        ("/media/hls/v/abc/540p/seg1.ts", 404),  # not a playlist
        ("/media/hls/secret.m3u8", 404),
        ("/media/hls/v/abc/broken.m3u8", 502),  # not UTF-8
        ("/media/hls/v/abc/not-a-playlist.m3u8", 502),
    ],
)
async def test_bad_assets_get_4xx_or_502_never_a_crash(
    app: FastAPI, mint: Mint, target: str, status: int
) -> None:
    async with client_for(app) as client:
        response = await client.get(target, headers=bearer(mint(scopes=("media:read",))))
    assert response.status_code == status
    assert "error" in response.json()


@pytest.mark.anyio
async def test_links_bound_to_the_callers_address_and_subject(
    media: Path, validator: Validator, keys: KeySet, clock: FrozenClock, mint: Mint
) -> None:
    app = build(
        DirectorySource(media),
        validator,
        keys,
        clock,
        client_ip=lambda request: request.client.host if request.client else None,
        ip_prefix=24,
        subject_in_links=True,
    )
    token = mint(scopes=("media:read",), subject="alice")
    verifier = Verifier(keys, clock=clock)
    async with client_for(app, "203.0.113.9") as client:
        body = (await client.get("/media/url/v/abc/540p/seg1.ts", headers=bearer(token))).json()
        start = (await client.get("/media/url/v/abc/master.m3u8", headers=bearer(token))).json()
        same_network = (await client.get(start["url"])).status_code
    assert "&tw_ip=203.0.113.0/24&tw_sub=alice&" in body["url"]
    assert verifier.verify_url(body["url"], "203.0.113.200").subject == "alice"
    assert verifier.verify_url(body["url"], "198.51.100.1").reason is Reason.WRONG_IP
    assert same_network == 200
    async with client_for(app, "198.51.100.1") as elsewhere:
        response = await elsewhere.get(start["url"])
    assert response.status_code == 403
    assert response.json()["reason"] == "wrong_ip"


def _origin(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.anyio
async def test_playlists_fetched_from_an_origin(
    validator: Validator, keys: KeySet, clock: FrozenClock, mint: Mint
) -> None:
    seen: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/v/abc/540p/index.m3u8":
            return httpx.Response(200, text=VARIANT.replace("\n", "\r\n"))
        if request.url.path == "/v/abc/huge.m3u8":
            return httpx.Response(200, content=b"#EXTM3U\n" + b"#" * 200)
        if request.url.path == "/v/abc/down.m3u8":
            raise httpx.ConnectError("refused")
        if request.url.path == "/v/abc/error.m3u8":
            return httpx.Response(500)
        return httpx.Response(404)

    async with _origin(origin) as upstream:
        source = OriginSource("https://origin.internal/", upstream, max_bytes=100)
        app = build(source, validator, keys, clock)
        token = bearer(mint(scopes=("media:read",)))
        async with client_for(app) as client:
            ok = await client.get("/media/hls/v/abc/540p/index.m3u8", headers=token)
            codes = [
                (await client.get(f"/media/hls/v/abc/{name}.m3u8", headers=token)).status_code
                for name in ("missing", "huge", "down", "error")
            ]
    assert ok.status_code == 200
    assert ok.text.count("\r\n") == VARIANT.count("\n")  # CRLF kept
    assert len(SIGNED.findall(ok.text)) == 2
    assert codes == [404, 502, 502, 502]
    assert seen[0] == "https://origin.internal/v/abc/540p/index.m3u8"
    assert repr(source) == "OriginSource('https://origin.internal')"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"media_origin": "https://cdn.example/base"}, "no path"),
        ({"media_origin": "https://cdn.example/"}, "no path"),
        ({"media_origin": "https://CDN.example"}, "lower-case"),
        ({"media_origin": "/relative"}, "no path"),
        ({"media_origin": "https://cdn.example", "asset_prefix": "/v"}, "ending with /"),
        ({"media_origin": "https://cdn.example", "asset_prefix": "/a/../"}, "malformed|dot"),
    ],
)
def test_policies_that_would_sign_the_wrong_thing(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MediaPolicy(**settings)  # type: ignore[arg-type]
