"""Redirect URIs, post-logout redirect URIs and jwks_uri are checked when a client is
registered (RFC 6749 §3.1.2, RFC 8252 §7.1 and §7.3), wherever the registration comes from."""

from __future__ import annotations

import pytest

from tokenward.oauth.client_uris import MAX_URIS, UriError, check_uri, redirect_uris

GOOD = [
    "https://app.example/callback",
    "https://app.example:8443/cb?tenant=a",  # a query is allowed; the port is a real one
    "https://APP.example/c%C3%A9",
    "https://[2001:db8::1]/cb",
    "http://127.0.0.1/callback",  # loopback: /authorize then accepts any port
    "http://127.0.0.1:51004/cb",
    "http://[::1]/cb",
    "http://localhost:8080/cb",  # matched exactly at /authorize (no port leeway)
    "com.example.app:/oauth2redirect",  # RFC 8252 §7.1
    "com.example.app://callback",
]

BAD = [
    ("", "not an absolute URI"),
    ("/callback", "not an absolute URI"),
    ("app.example/cb", "not an absolute URI"),
    ("https://app.example/cb#x", "fragment"),
    ("https://app.example/cb#", "fragment"),
    ("http://app.example/cb", "loopback only"),
    ("http://127.0.0.1.evil.example/cb", "loopback only"),
    ("http://localhost.evil.example/cb", "loopback only"),
    ("https://user@app.example/cb", "user information"),
    ("http://evil@127.0.0.1/cb", "user information"),
    ("https://app.example:0/cb", "port"),
    ("https://app.example:65536/cb", "port"),
    ("https://app.example:08443/cb", "port"),
    ("https://app.example:/cb", "port"),
    ("https://app.example:44x/cb", "port"),
    ("http://127.0.0.1:99999/cb", "port"),
    ("https:///cb", "host"),
    ("https:/app.example/cb", "needs a host"),
    ("https://app..example/cb", "host"),
    ("https://[::1/cb", "host"),
    ("https://[::1]x:443/cb", "host"),
    ("https://[fe80::1%25eth0]/cb", "host"),
    ("https://app.example/c b", "URI characters"),
    ("https://app.example/cb\r\nX: y", "URI characters"),
    ("https://app.example/caf\u00e9", "URI characters"),
    ("https://app.example\\@evil.example/", "URI characters"),
    ("https://app.example/%zz", "percent-escape"),
    ("myapp:/callback", "private-use scheme named after a domain"),
    ("javascript:alert(1)", "private-use scheme"),
    ("data:text/html,hi", "private-use scheme"),
    ("file:///etc/passwd", "private-use scheme"),
    ("com.example.app://user@cb", "user information"),
    ("https://app.example/" + "a" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize("uri", GOOD)
def test_sound_redirect_uris_are_accepted(uri: str) -> None:
    assert redirect_uris([uri]) == (uri,)


@pytest.mark.parametrize(("uri", "problem"), BAD)
def test_unsound_redirect_uris_are_refused_saying_why(uri: str, problem: str) -> None:
    with pytest.raises(UriError) as caught:
        redirect_uris(["https://fine.example/cb", uri])
    message = str(caught.value)
    assert problem in message
    assert message.startswith("redirect URI ")
    assert "\n" not in message  # a refused URI is quoted escaped: one line, bounded
    assert len(message) < 400


def test_lists_are_bounded_and_duplicates_dropped() -> None:
    many = [f"https://app.example/{index}" for index in range(MAX_URIS + 1)]
    with pytest.raises(UriError, match=f"at most {MAX_URIS}"):
        redirect_uris(many)
    assert redirect_uris(["https://a.example/", "https://b.example/", "https://a.example/"]) == (
        "https://a.example/",
        "https://b.example/",
    )


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://keys.example/jwks", "https"),
        ("com.example.app:/jwks", "https"),
        ("https://keys.example/jwks#k", "fragment"),
        ("https://u:p@keys.example/jwks", "user information"),
        ("https://keys.example:0/jwks", "port"),
    ],
)
def test_a_jwks_uri_must_be_https_or_loopback(uri: str, problem: str) -> None:
    with pytest.raises(UriError, match=problem):
        check_uri(uri, "jwks_uri")
    check_uri("https://keys.example/jwks", "jwks_uri")
    check_uri("http://127.0.0.1:9000/jwks", "jwks_uri")
