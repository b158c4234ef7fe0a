"""`auth: signed_url` routes over loopback: links signed with `tokenward.signedurl` pass (and
reach the upstream without their signature); tampered, expired, wrong-IP and unsigned links are
refused with the verdict's status and a JSON error naming the reason."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from tests.conftest import FrozenClock
from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.upstream_app import Upstream
from tokenward.signedurl import KeySet, SigningKey, UrlSigner

SECRET = "a-signing-secret-of-at-least-32-bytes"
OLD_SECRET = "the-previous-secret-still-honoured-for-links"
CONFIG = f"""
routes:
  - name: media
    prefix: /media
    upstreams: [{{upstream}}]
    auth: signed_url
    signed_url:
      keys: [{{{{kid: k2, secret: {SECRET}}}}}, {{{{kid: k1, secret: {OLD_SECRET}}}}}]
"""


@pytest.fixture
def running(gateway: GatewayFactory) -> Running:
    return gateway(CONFIG)


@pytest.fixture
def signer(clock: FrozenClock) -> UrlSigner:
    return UrlSigner(KeySet(SigningKey("k2", SECRET.encode())), clock=clock)


def _refused(running: Running, url: str, status: int, reason: str) -> None:
    response = running.http.get(url)
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    assert response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert running.last_audit()["reason"] == reason


def test_signed_link_passes_without_its_signature(running: Running, signer: UrlSigner) -> None:
    url = signer.sign_url(f"{running.base}/media/a.ts?quality=hd", ttl=60, subject="alice")
    response = running.http.get(url)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert parse_qs(seen["query"]) == {"quality": ["hd"]}  # no tw_ parameter reaches it
    assert seen["headers"]["x-auth-subject"] == ["alice"]
    assert running.last_audit()["reason"] == "ok"


def test_old_key_prefix_link_and_ip_binding(
    running: Running, signer: UrlSigner, clock: FrozenClock
) -> None:
    old = UrlSigner(KeySet(SigningKey("k1", OLD_SECRET.encode())), clock=clock)
    grant = old.sign_prefix("/media/show/", ttl=60, client_ip="127.0.0.1")
    assert running.http.get(running.base + grant.url("/media/show/seg1.ts")).status_code == 200
    assert running.http.get(running.base + grant.url("/media/show/seg2.ts")).status_code == 200
    _refused(running, f"{running.base}/media/other.ts?{grant.query}", 403, "wrong_path")


def test_tampered_links_are_refused(running: Running, signer: UrlSigner) -> None:
    url = signer.sign_url(f"{running.base}/media/a.ts", ttl=60)
    _refused(running, url.replace("/media/a.ts", "/media/b.ts"), 403, "bad_signature")
    exp = parse_qs(url.split("?", 1)[1])["tw_exp"][0]
    _refused(running, url.replace(exp, str(int(exp) + 3600)), 403, "bad_signature")
    _refused(running, url + "&extra=1", 403, "bad_signature")
    _refused(running, url.replace("tw_kid=k2", "tw_kid=k9"), 403, "unknown_key")
    other = UrlSigner(KeySet(SigningKey("k2", b"x" * 32)))
    _refused(running, other.sign_url(f"{running.base}/media/a.ts", ttl=60), 403, "bad_signature")


def test_expired_link_is_gone(running: Running, signer: UrlSigner, clock: FrozenClock) -> None:
    url = signer.sign_url(f"{running.base}/media/a.ts", ttl=60)
    assert running.http.get(url).status_code == 200
    clock.advance(61)
    _refused(running, url, 410, "expired")


def test_wrong_ip_missing_and_malformed(running: Running, signer: UrlSigner) -> None:
    url = signer.sign_url(f"{running.base}/media/a.ts", ttl=60, client_ip="203.0.113.7")
    _refused(running, url, 403, "wrong_ip")
    _refused(running, f"{running.base}/media/a.ts", 403, "missing")
    signed = signer.sign_url(f"{running.base}/media/x/a.ts", ttl=60)
    # `%25` passes the gateway's path rules (gateway/paths.py) but not a link's (no `%25`).
    _refused(running, signed.replace("/x/a.ts", "/x/a%252e.ts"), 400, "malformed")
    # An encoded slash is refused before the link is looked at, like on every route.
    refused = running.http.get(signed.replace("/x/a.ts", "/x%2Fa.ts"))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
    assert running.last_audit()["reason"] == "invalid_path"


def test_access_token_in_query_is_still_refused(running: Running, signer: UrlSigner) -> None:
    url = signer.sign_url(f"{running.base}/media/a.ts?access_token=x", ttl=60)
    assert running.http.get(url).status_code == 400


def test_link_is_checked_on_the_resolved_path(
    running: Running, signer: UrlSigner, upstream: Upstream
) -> None:
    """Checked on the path the upstream is sent (gateway/paths.py): dot segments on the request
    line neither break a link nor stretch it to another file."""
    query = signer.sign_url(f"{running.base}/media/a.ts", ttl=60).split("?", 1)[1]
    same = running.http.get("/", extensions={"target": f"/media/x/../a.ts?{query}".encode()})
    assert same.status_code == 200, same.text
    assert same.json()["raw_path"] == "/media/a.ts"
    before = upstream.requests
    other = running.http.get("/", extensions={"target": f"/media/a.ts/../b.ts?{query}".encode()})
    assert other.status_code == 403
    assert upstream.requests == before
