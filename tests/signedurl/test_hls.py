"""HLS rewriting on realistic playlists: every URI signed, every other byte where it was."""

from __future__ import annotations

import re

import pytest

from tests.conftest import FrozenClock
from tests.signedurl.conftest import NOW, split
from tokenward.signedurl import Reason, UrlSigner, Verifier
from tokenward.signedurl.hls import (
    HlsLinks,
    PlaylistError,
    UriKind,
    playlist_duration,
    rewrite,
    sign_playlist,
)

MASTER = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:6\n"
    "#EXT-X-INDEPENDENT-SEGMENTS\n"
    '#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://key-42",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"\n'
    '#EXT-X-SESSION-DATA:DATA-ID="com.example.title",VALUE="x,URI=y"\n'
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",LANGUAGE="en",NAME="English",AUTOSELECT=YES,DEFAULT=YES,CHANNELS="2",URI="audio/en/index.m3u8"\n'
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",LANGUAGE="fr",NAME="Français",AUTOSELECT=YES,DEFAULT=NO,URI="../shared/audio/fr.m3u8"\n'
    '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",DEFAULT=NO,LANGUAGE="en",URI="subs/en.m3u8"\n'
    '#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC1",INSTREAM-ID="CC1"\n'
    "\n"
    "# renditions, lowest first\n"
    '#EXT-X-STREAM-INF:BANDWIDTH=2227464,AVERAGE-BANDWIDTH=2218327,CODECS="avc1.640020,mp4a.40.2",RESOLUTION=960x540,FRAME-RATE=60.000,AUDIO="aud",SUBTITLES="subs",CLOSED-CAPTIONS="cc"\n'
    "540p/index.m3u8\n"
    '#EXT-X-STREAM-INF:BANDWIDTH=8178040,CODECS="avc1.64002a,mp4a.40.2",RESOLUTION=1920x1080,AUDIO="aud"\n'
    "1080p/index.m3u8?quality=high\n"
    '#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS="avc1.42e00a"\n'
    "https://ads.example/house/index.m3u8\n"
    '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=187492,CODECS="avc1.640020",RESOLUTION=960x540,URI="540p/iframes.m3u8"\n'
)

MEDIA = (
    "#EXTM3U\r\n"
    "#EXT-X-VERSION:7\r\n"
    "#EXT-X-TARGETDURATION:6\r\n"
    "#EXT-X-MEDIA-SEQUENCE:0\r\n"
    "#EXT-X-PLAYLIST-TYPE:VOD\r\n"
    '#EXT-X-KEY:METHOD=AES-128,URI="https://CDN.example/v/abc/keys/k1.key",IV=0x00000000000000000000000000000001\r\n'
    '#EXT-X-MAP:URI="init.mp4",BYTERANGE="720@0"\r\n'
    "#EXTINF:6.006,\r\n"
    "#EXT-X-BYTERANGE:1000000@720\r\n"
    "main.mp4\r\n"
    "#EXTINF:6.006,\r\n"
    "#EXT-X-BYTERANGE:1000000\r\n"
    "main.mp4\r\n"
    "#EXT-X-DISCONTINUITY\r\n"
    "#EXT-X-KEY:METHOD=NONE\r\n"
    '#EXT-X-MAP:URI="../ads/init.mp4"\r\n'
    "#EXT-X-PROGRAM-DATE-TIME:2025-06-01T12:00:00.000Z\r\n"
    "#EXTINF:4.0,ad break\r\n"
    "../ads/seg%2d1.m4s\r\n"
    '# a comment, URI="not-a-uri" included, is not a tag\r\n'
    "\r\n"
    "#EXT-X-DISCONTINUITY\r\n"
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k2",KEYFORMAT="com.apple.streamingkeydelivery"\r\n'
    "#EXTINF:5.005,\r\n"
    "seg-3.m4s\r\n"
    "#EXT-X-ENDLIST\r\n"
)

LINKS = HlsLinks(
    media_origin="https://cdn.example",
    playlist_origin="https://api.example",
    playlist_mount="/media/hls",
    external=True,
)
SIGNED = re.compile(r"https://(?:cdn|api)\.example/[^\"\s]*tw_sig=[A-Za-z0-9_-]{43}")


def _sign(signer: UrlSigner, text: str, path: str, links: HlsLinks = LINKS) -> str:
    return sign_playlist(text, path, signer.bind(ttl=120), signer.bind(ttl=3600), links)


def _masked(text: str, uris: list[str]) -> str:
    for uri in uris:
        text = text.replace(uri, "<URI>", 1)
    return text


def _signed_urls(text: str) -> list[str]:
    return SIGNED.findall(text)


def test_master_playlist(signer: UrlSigner, verifier: Verifier) -> None:
    out = _sign(signer, MASTER, "/v/abc/master.m3u8")
    urls = _signed_urls(out)
    targets = [url.split("?")[0] for url in urls]
    assert targets == [
        "https://api.example/media/hls/v/abc/audio/en/index.m3u8",
        "https://api.example/media/hls/v/shared/audio/fr.m3u8",
        "https://api.example/media/hls/v/abc/subs/en.m3u8",
        "https://api.example/media/hls/v/abc/540p/index.m3u8",
        "https://api.example/media/hls/v/abc/1080p/index.m3u8",
        "https://api.example/media/hls/v/abc/540p/iframes.m3u8",
    ]
    assert "1080p/index.m3u8?quality=high&tw_exp=1800003600&" in out
    for url in urls:
        verdict = verifier.verify_url(url)
        assert verdict.ok, url
        assert verdict.expires == NOW + 3600  # playlists get the playlist TTL
    # Everything else, byte for byte: skd://, a foreign host and quoted look-alikes untouched.
    original = [
        "audio/en/index.m3u8",
        "../shared/audio/fr.m3u8",
        "subs/en.m3u8",
        "540p/index.m3u8",
        "1080p/index.m3u8?quality=high",
        "540p/iframes.m3u8",
    ]
    assert _masked(out, urls) == _masked(MASTER, original)
    assert 'URI="skd://key-42"' in out
    assert "\nhttps://ads.example/house/index.m3u8\n" in out
    assert 'VALUE="x,URI=y"' in out


def test_media_playlist_with_crlf_keys_maps_and_byte_ranges(
    signer: UrlSigner, verifier: Verifier, clock: FrozenClock
) -> None:
    out = _sign(signer, MEDIA, "/v/abc/720p/index.m3u8")
    urls = _signed_urls(out)
    assert [url.split("?")[0] for url in urls] == [
        "https://cdn.example/v/abc/keys/k1.key",
        "https://cdn.example/v/abc/720p/init.mp4",
        "https://cdn.example/v/abc/720p/main.mp4",
        "https://cdn.example/v/abc/720p/main.mp4",
        "https://cdn.example/v/abc/ads/init.mp4",
        "https://cdn.example/v/abc/ads/seg-1.m4s",  # %2d is an unreserved '-': decoded
        "https://cdn.example/v/abc/720p/seg-3.m4s",
    ]
    assert urls[2] == urls[3]  # one resource, two byte ranges: one signed URL
    original = [
        "https://CDN.example/v/abc/keys/k1.key",
        "init.mp4",
        "main.mp4",
        "main.mp4",
        "../ads/init.mp4",
        "../ads/seg%2d1.m4s",
        "seg-3.m4s",
    ]
    assert _masked(out, urls) == _masked(MEDIA, original)
    assert out.count("\r\n") == MEDIA.count("\r\n")
    assert "\n" not in out.replace("\r\n", "")  # no bare LF crept in
    assert 'BYTERANGE="720@0"' in out
    assert "#EXT-X-BYTERANGE:1000000@720\r\n" in out
    assert 'URI="not-a-uri"' in out
    for url in urls:
        assert verifier.verify_url(url).expires == NOW + 120
    clock.advance(120)
    assert verifier.verify_url(urls[0]).reason is Reason.EXPIRED


def test_rewrite_reports_kinds_and_keeps_whitespace() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,URI="a.m3u8"\n'
        '#EXT-X-RENDITION-REPORT:URI="../1M/p.m3u8",LAST-MSN=273\n'
        '#EXT-X-PART:DURATION=0.5,URI="part1.mp4"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part2.mp4"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
        "#EXT-X-UNKNOWN-TAG\n"
        "  v.m3u8\t\n"
        "s.ts"  # no final newline
    )
    seen: list[tuple[str, UriKind]] = []

    def record(uri: str, kind: UriKind) -> str:
        seen.append((uri, kind))
        return uri.upper()

    out = rewrite(text, record)
    assert seen == [
        ("a.m3u8", UriKind.PLAYLIST),
        ("../1M/p.m3u8", UriKind.PLAYLIST),
        ("part1.mp4", UriKind.MEDIA),
        ("part2.mp4", UriKind.MEDIA),
        ("v.m3u8", UriKind.PLAYLIST),
        ("s.ts", UriKind.MEDIA),
    ]
    assert out.endswith("\n  V.M3U8\t\nS.TS")
    assert rewrite(text, lambda uri, kind: None) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a playlist\nseg.ts\n", "#EXTM3U"),
        ("\ufeff#EXTM3U\nseg.ts\n", "#EXTM3U"),  # RFC 8216 §4: no byte order mark
        ('#EXTM3U\n#EXT-X-MAP:URI="init.mp4\n', "unterminated"),
        ('#EXTM3U\n#EXT-X-MAP:URI="a"BYTERANGE="1"\n', "commas"),
        ('#EXTM3U\n#EXT-X-MAP:URI="a",BYTERANGE\n', "without a value"),
        ("#EXTM3U\n/elsewhere/seg.ts\n", "outside the allowed prefix"),
        ("#EXTM3U\nseg.ts#t=10\n", "cannot be signed"),
        ("#EXTM3U\na%2Fb.ts\n", "cannot be signed"),
        ("#EXTM3U\nseg.ts?tw_exp=1\n", "tw_ parameters"),
        ("#EXTM3U\nseg.ts?a=1&a=2\n", "cannot be signed"),
    ],
)
def test_playlists_we_cannot_rewrite_faithfully(signer: UrlSigner, text: str, message: str) -> None:
    links = HlsLinks(media_origin="https://cdn.example", allowed_prefix="/v/")
    with pytest.raises(PlaylistError, match=message):
        _sign(signer, text, "/v/abc/index.m3u8", links)


def test_the_playlists_own_path_must_be_unambiguous(signer: UrlSigner) -> None:
    with pytest.raises(PlaylistError, match="own path"):
        _sign(signer, "#EXTM3U\nseg.ts\n", "/v/../x/index.m3u8")


def test_absolute_uris_of_our_cdn_are_signed_only_when_asked(signer: UrlSigner) -> None:
    text = "#EXTM3U\nhttps://cdn.example/v/a.ts\n//cdn.example/v/b.ts\n"
    local = HlsLinks(media_origin="https://cdn.example")
    assert _sign(signer, text, "/v/index.m3u8", local) == text
    out = _sign(signer, text, "/v/index.m3u8", LINKS)
    assert [url.split("?")[0] for url in _signed_urls(out)] == [
        "https://cdn.example/v/a.ts",
        "https://cdn.example/v/b.ts",
    ]


def test_root_relative_links_without_origins(signer: UrlSigner, verifier: Verifier) -> None:
    out = _sign(signer, "#EXTM3U\n#EXTINF:4,\nseg.ts\n", "/v/x/index.m3u8", HlsLinks())
    line = out.split("\n")[2]
    assert line.startswith("/v/x/seg.ts?tw_exp=")
    path, query = split(line)
    assert verifier.verify_request(path, query, None).ok


def test_a_thousand_segments(signer: UrlSigner, verifier: Verifier) -> None:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for index in range(1000):
        lines += ["#EXTINF:4.000,", f"segment_{index:05d}.ts"]
    text = "\n".join([*lines, "#EXT-X-ENDLIST", ""])
    out = _sign(signer, text, "/v/long/index.m3u8")
    urls = _signed_urls(out)
    assert len(set(urls)) == 1000
    assert all(verifier.verify_url(url).ok for url in urls[::97])
    assert playlist_duration(text) == 4000.0


def test_playlist_duration() -> None:
    assert playlist_duration(MEDIA) == pytest.approx(6.006 + 6.006 + 4.0 + 5.005)
    assert playlist_duration(MEDIA.replace("#EXT-X-ENDLIST", "")) == 0.0  # live: refetched
    assert playlist_duration(MASTER) == 0.0
