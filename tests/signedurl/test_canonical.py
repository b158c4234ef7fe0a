"""Canonicalisation, as docs/signed-urls.md states it: what is signed, what is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.signedurl.conftest import split, verdict_of
from tokenward.signedurl import Reason, SignedUrlError, UrlSigner, Verifier
from tokenward.signedurl.canonical import (
    canonical_path,
    remove_dot_segments,
    resolve_reference,
    split_query,
    split_url,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/a/b.ts", "/a/b.ts"),
        ("/%61/%62%2ets", "/a/b.ts"),  # unreserved characters are decoded
        ("/%7euser/%2D%5f", "/~user/-_"),
        ("/caf%c3%a9", "/caf%C3%A9"),  # other escapes: hex upper-cased
        ("/café", "/caf%C3%A9"),  # raw non-ASCII: encoded as UTF-8
        ("/a b", "/a%20b"),
        ('/a"<>^`{|}', "/a%22%3C%3E%5E%60%7B%7C%7D"),
        ("/a;b=c/d!$&'()*+,", "/a;b=c/d!$&'()*+,"),  # sub-delims stay literal
        ("/a:b@c", "/a:b@c"),
        ("/dir/", "/dir/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/..b/c..", "/a/..b/c.."),  # only whole-segment dots are dot segments
    ],
)
def test_canonical_path(raw: str, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "relative/path",
        "",
        "/a/../b",
        "/a/./b",
        "/a/..",
        "/..",
        "/a/%2e%2e/b",  # encoded dot segment
        "/a/%2E%2e/b",
        "/a/.%2e/b",
        "/a/..;jsessionid=x/b",  # `..` to servers that strip path parameters
        "/a/.;x/b",
        "/a/%252e%252e/b",  # double encoding: a second decode would make `..`
        "/a%25b",
        "/a%2Fb",  # encoded slash
        "/a%2fb",
        "/a%5Cb",  # encoded backslash
        "/a\\b",
        "/a%00b",  # NUL
        "/a%0Ab",
        "/a%7Fb",
        "/a//b",
        "//host/b",
        "/a%zzb",
        "/a%4",
        "/a\nb",
        "/a\x00b",
        "/\ud800",
        "/" + "a" * 9000,
    ],
)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    with pytest.raises(SignedUrlError) as caught:
        canonical_path(raw)
    assert caught.value.reason is Reason.MALFORMED


def test_split_query_decodes_fields_and_normalises_the_rest() -> None:
    fields, others = split_query("b=%7e%2a&tw%5Fexp=12&a&c=x+y&&tw_sub=al%69ce%20b")
    assert fields == {"tw_exp": "12", "tw_sub": "alice b"}
    assert others == ["b=~%2A", "a", "c=x+y"]


@pytest.mark.parametrize(
    "query",
    [
        "a=1&a=2",  # duplicates: first-wins and last-wins servers disagree
        "a=1&A=2",  # case-insensitive servers merge these
        "a=1&%61=2",
        "a+b=1&a%20b=2",  # form decoding makes both `a b`
        "a=1;b=2",  # some servers split on `;`
        "=1",
        "tw_exp=1&tw_exp=2",
        "TW_EXP=1",
        "tw_Sig=1",
        "tw_extra=1",  # the tw_ namespace is reserved
        "tw%5fsig=1&tw_sig=2",
        "a=%zz",
        "a=\x01",
        "a=" + "x" * 9000,
    ],
)
def test_ambiguous_queries_are_refused(query: str) -> None:
    with pytest.raises(SignedUrlError) as caught:
        split_query(query)
    assert caught.value.reason is Reason.MALFORMED


def test_split_url_lowercases_scheme_and_host_only() -> None:
    assert split_url("HTTPS://CDN.Example:8443/A/B?Q=1") == (
        "https://cdn.example:8443",
        "/A/B",
        "Q=1",
    )
    assert split_url("http://[2001:DB8::1]/x") == ("http://[2001:db8::1]", "/x", "")
    assert split_url("https://cdn.example") == ("https://cdn.example", "/", "")
    assert split_url("/only/a/path?x") == ("", "/only/a/path", "x")


@pytest.mark.parametrize(
    ("base", "reference", "resolved"),
    [
        ("/v/abc/720p/index.m3u8", "seg1.ts", ("/v/abc/720p/seg1.ts", "")),
        ("/v/abc/720p/index.m3u8", "../audio/en.m3u8", ("/v/abc/audio/en.m3u8", "")),
        ("/v/abc/720p/index.m3u8", "%2e%2e/keys/k.key?v=2", ("/v/abc/keys/k.key", "v=2")),
        ("/v/abc/720p/index.m3u8", "/other/x.ts", ("/other/x.ts", "")),
        ("/v/abc/720p/index.m3u8", "./sub/./x.ts", ("/v/abc/720p/sub/x.ts", "")),
        ("/v/abc/720p/index.m3u8", "../../../../x.ts", ("/x.ts", "")),
        ("/v/index.m3u8", "", ("/v/index.m3u8", "")),
    ],
)
def test_resolve_reference(base: str, reference: str, resolved: tuple[str, str]) -> None:
    assert resolve_reference(base, reference) == resolved


def test_remove_dot_segments_rfc3986_examples() -> None:
    # RFC 3986 §5.2.4 and §5.4.1 normal examples, against base path /b/c/d;p
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("/b/c/.") == "/b/c/"
    assert remove_dot_segments("/b/c/..") == "/b/"
    assert remove_dot_segments("/b/c/../..") == "/"
    assert remove_dot_segments("/..") == "/"


# --- through signing and verification ----------------------------------------------------------

URL = "https://cdn.example/media/caf%C3%A9/clip~1.mp4?b=2&a=%2A"


def _move_first_tw_param_to_front(url: str) -> str:
    path, query = url.split("?")
    pieces = query.split("&")
    return path + "?" + "&".join([pieces[-1], *pieces[:-1]])


@pytest.fixture
def signed(signer: UrlSigner) -> str:
    return signer.sign_url(URL, ttl=60)


@pytest.mark.parametrize(
    "respell",
    [
        lambda url: url.replace("https://cdn.example", "HTTPS://CDN.EXAMPLE"),
        lambda url: url.replace("caf%C3%A9", "caf%c3%a9"),
        lambda url: url.replace("caf%C3%A9", "café"),
        lambda url: url.replace("clip~1", "clip%7E1"),
        lambda url: url.replace("/media/", "/%6Dedia/"),
        lambda url: url.replace("a=%2A", "a=%2a"),
        lambda url: url.replace("?b=2&a=%2A&", "?a=%2A&b=2&"),  # parameter order
        lambda url: url.replace("?b=2&a=%2A&", "?b=2&&a=%2A&"),  # an empty piece
        lambda url: url.replace("tw_sig=", "tw%5Fsig="),  # the name re-encoded
        _move_first_tw_param_to_front,
    ],
)
def test_harmless_respellings_still_verify(
    verifier: Verifier, signed: str, respell: Callable[[str], str]
) -> None:
    respelled = respell(signed)
    assert respelled != signed
    assert verdict_of(verifier, respelled).ok, respelled


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda url: url.replace("clip~1", "clip~2"), Reason.BAD_SIGNATURE),
        (lambda url: url.replace("clip~1", "CLIP~1"), Reason.BAD_SIGNATURE),  # path case counts
        (lambda url: url.replace("a=%2A", "a=*"), Reason.BAD_SIGNATURE),  # reserved: not decoded
        (lambda url: url.replace("b=2", "b=2&b=3"), Reason.MALFORMED),
        (lambda url: url.replace("b=2", "B=3&b=2"), Reason.MALFORMED),
        (lambda url: url.replace("/media/", "/media/x/../"), Reason.MALFORMED),
        (lambda url: url.replace("/media/", "/media/%2e/"), Reason.MALFORMED),
        (lambda url: url.replace("/media/", "/media//"), Reason.MALFORMED),
        (lambda url: url.replace("tw_sig=", "tw_sig=A&tw_sig="), Reason.MALFORMED),
        (lambda url: url.replace("tw_sig=", "TW_SIG=x&tw_sig="), Reason.MALFORMED),
        (lambda url: url.replace("&tw_kid", "&tw_ip=127.0.0.1&tw_kid"), Reason.BAD_SIGNATURE),
        (lambda url: url.replace("&tw_kid", "&tw_nbf=1&tw_kid"), Reason.BAD_SIGNATURE),
        (lambda url: url.replace("&tw_kid", "&tw_sub=eve&tw_kid"), Reason.BAD_SIGNATURE),
        (lambda url: url.replace("?", "?tw_acl=/&"), Reason.MALFORMED),  # query under a prefix
        (lambda url: url.split("?")[0] + "?tw_acl=/&" + url.split("&", 2)[2], Reason.BAD_SIGNATURE),
        (lambda url: url.replace("tw_exp=1800000060", "tw_exp=1800000061"), Reason.BAD_SIGNATURE),
        (lambda url: url.replace("tw_exp=1800000060", "tw_exp=01800000060"), Reason.MALFORMED),
    ],
)
def test_tampering_fails(
    verifier: Verifier, signed: str, tamper: Callable[[str], str], reason: Reason
) -> None:
    tampered = tamper(signed)
    assert tampered != signed
    assert verdict_of(verifier, tampered).reason is reason, tampered


def test_stripping_optional_claims_breaks_the_signature(
    signer: UrlSigner, verifier: Verifier
) -> None:
    url = signer.sign_url(URL, ttl=60, not_before=1_799_999_000, client_ip="10.0.0.1", subject="s")
    assert verdict_of(verifier, url, "10.0.0.1").ok
    for name in ("tw_nbf", "tw_ip", "tw_sub"):
        path, query = split(url)
        kept = "&".join(p for p in query.split("&") if not p.startswith(name + "="))
        assert verifier.verify_request(path, kept, "10.0.0.1").reason is Reason.BAD_SIGNATURE


def test_a_url_link_cannot_be_turned_into_a_prefix_link(
    signer: UrlSigner, verifier: Verifier
) -> None:
    url = signer.sign_url("/videos/abc/", ttl=60)  # a URL signature for the directory itself
    _, query = split(url)
    verdict = verifier.verify_request("/videos/abc/other.ts", "tw_acl=/videos/abc/&" + query, None)
    assert verdict.reason is Reason.BAD_SIGNATURE
