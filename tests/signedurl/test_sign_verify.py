"""Signing and verifying: every claim, every failure reason, key rotation, the injected clock."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.signedurl.conftest import NOW, SECRET_1, SECRET_2, split, verdict_of
from tokenward.signedurl import (
    KeySet,
    Reason,
    SignedUrlError,
    SigningKey,
    UrlSigner,
    Verdict,
    Verifier,
    verify_request,
)

ASSET = "https://cdn.example/videos/abc/720p/segment_00001.ts"


def test_a_signed_url_verifies_with_its_claims(signer: UrlSigner, verifier: Verifier) -> None:
    url = signer.sign_url(ASSET, ttl=300)
    assert url.startswith(ASSET + "?tw_exp=1800000300&tw_kid=2025-06&tw_sig=")
    assert verdict_of(verifier, url) == Verdict(None, None, "2025-06", NOW + 300, None)
    assert verdict_of(verifier, url).ok
    assert verdict_of(verifier, url).status == 200


def test_expiry_follows_the_injected_clock(
    signer: UrlSigner, verifier: Verifier, clock: FrozenClock
) -> None:
    url = signer.sign_url(ASSET, ttl=60)
    clock.advance(59)
    assert verdict_of(verifier, url).ok
    clock.advance(1)  # exp is the first second the link is no longer good
    assert verdict_of(verifier, url).reason is Reason.EXPIRED
    assert verdict_of(verifier, url).status == 410


def test_leeway_absorbs_clock_skew(signer: UrlSigner, keys: KeySet, clock: FrozenClock) -> None:
    url = signer.sign_url(ASSET, ttl=60, not_before=NOW + 10)
    lenient = Verifier(keys, clock=clock, leeway=15)
    assert verdict_of(lenient, url).ok  # 10 s early, within 15 s leeway
    clock.advance(60 + 14)
    assert verdict_of(lenient, url).ok
    clock.advance(1)
    assert verdict_of(lenient, url).reason is Reason.EXPIRED


def test_not_before(signer: UrlSigner, verifier: Verifier, clock: FrozenClock) -> None:
    url = signer.sign_url(ASSET, ttl=600, not_before=NOW + 120)
    assert "&tw_nbf=1800000120&" in url
    assert verdict_of(verifier, url).reason is Reason.NOT_YET_VALID
    clock.advance(120)
    assert verdict_of(verifier, url).ok


def test_explicit_now_overrides_the_clock(signer: UrlSigner, verifier: Verifier) -> None:
    path, query = split(signer.sign_url(ASSET, ttl=60))
    assert verifier.verify_request(path, query, None, NOW + 59).ok
    assert verifier.verify_request(path, query, None, NOW + 60).reason is Reason.EXPIRED


@pytest.mark.parametrize(
    ("bound", "prefix", "client", "ok"),
    [
        ("203.0.113.7", None, "203.0.113.7", True),
        ("203.0.113.7", None, "203.0.113.8", False),
        ("203.0.113.7", None, "::ffff:203.0.113.7", True),  # dual-stack socket spelling
        ("203.0.113.7", 24, "203.0.113.250", True),
        ("203.0.113.7", 24, "203.0.114.1", False),
        ("203.0.113.0/24", None, "203.0.113.9", True),
        ("2001:db8::1", None, "2001:DB8:0:0::1", True),
        ("2001:db8:1:2::99", 64, "2001:db8:1:2:ffff::1", True),
        ("2001:db8:1:2::99", 64, "2001:db8:1:3::1", False),
        ("2001:db8::1", None, "203.0.113.7", False),  # another family never matches
        ("203.0.113.7", None, None, False),  # no client address at all
        ("203.0.113.7", None, "not-an-ip", False),
    ],
)
def test_client_ip_binding(
    signer: UrlSigner,
    verifier: Verifier,
    bound: str,
    prefix: int | None,
    client: str | None,
    ok: bool,
) -> None:
    url = signer.sign_url(ASSET, ttl=60, client_ip=bound, ip_prefix=prefix)
    verdict = verdict_of(verifier, url, client)
    assert verdict.ok is ok
    if not ok:
        assert verdict.reason is Reason.WRONG_IP


def test_ip_binding_is_written_canonically(signer: UrlSigner) -> None:
    url = signer.sign_url(ASSET, ttl=60, client_ip="2001:DB8:0:0:1::", ip_prefix=48)
    assert "&tw_ip=2001:db8::/48&" in url
    with pytest.raises(SignedUrlError, match="host bits"):
        signer.sign_url(ASSET, ttl=60, client_ip="203.0.113.7/24")  # ambiguous: say ip_prefix


def test_subject_round_trips_through_encoding(signer: UrlSigner, verifier: Verifier) -> None:
    url = signer.sign_url(ASSET, ttl=60, subject="alice@example.com/ü x&y")
    assert "&tw_sub=alice%40example.com%2F%C3%BC%20x%26y&" in url
    assert verdict_of(verifier, url).subject == "alice@example.com/ü x&y"


def test_key_rotation_keeps_links_in_flight(clock: FrozenClock) -> None:
    old, new = SigningKey("old", SECRET_1), SigningKey("new", SECRET_2)
    before = UrlSigner(KeySet(old), clock=clock).sign_url(ASSET, ttl=600)
    # Step 1: verifiers learn the new key; step 2: signers switch; old links still verify.
    rotated = KeySet(new, [old])
    after = UrlSigner(rotated, clock=clock).sign_url(ASSET, ttl=600)
    verifier = Verifier(rotated, clock=clock)
    assert verdict_of(verifier, before).kid == "old"
    assert verdict_of(verifier, after).kid == "new"
    # Step 3: the old key is dropped once its links have expired.
    retired = Verifier(KeySet(new), clock=clock)
    assert verdict_of(retired, before).reason is Reason.UNKNOWN_KEY


def test_another_keys_secret_under_the_same_id_is_a_bad_signature(clock: FrozenClock) -> None:
    forged = UrlSigner(KeySet(SigningKey("2025-06", b"x" * 32)), clock=clock)
    url = forged.sign_url(ASSET, ttl=60)
    keys = KeySet(SigningKey("2025-06", SECRET_1))
    assert verdict_of(Verifier(keys, clock=clock), url).reason is Reason.BAD_SIGNATURE


def test_prefix_links_cover_everything_under_the_prefix(
    signer: UrlSigner, verifier: Verifier
) -> None:
    grant = signer.sign_prefix("/videos/abc/", ttl=60, subject="bob")
    for path in ("/videos/abc/master.m3u8", "/videos/abc/720p/seg1.ts"):
        verdict = verdict_of(verifier, grant.url(path))
        assert verdict == Verdict(None, "bob", "2025-06", NOW + 60, "/videos/abc/")
    moved = grant.url("/videos/abc/x.ts").replace("/videos/abc/x.ts", "/videos/abd/x.ts")
    assert verdict_of(verifier, moved).reason is Reason.WRONG_PATH
    with pytest.raises(SignedUrlError, match="not under"):
        grant.url("/videos/abd/x.ts")
    with pytest.raises(SignedUrlError, match="end with /"):
        signer.sign_prefix("/videos/abc", ttl=60)


def test_a_prefix_link_refuses_an_unsigned_query_unless_allowed(
    signer: UrlSigner, keys: KeySet, clock: FrozenClock
) -> None:
    grant = signer.sign_prefix("/live/", ttl=60)
    url = grant.url("/live/index.m3u8") + "&_HLS_msn=42"
    assert verdict_of(Verifier(keys, clock=clock), url).reason is Reason.MALFORMED
    lenient = Verifier(keys, clock=clock, allow_unsigned_query=True)
    assert verdict_of(lenient, url).ok


def test_a_prefix_with_escapes_and_sub_delims(signer: UrlSigner, verifier: Verifier) -> None:
    grant = signer.sign_prefix("/a&b/caf%c3%a9 x/", ttl=60)
    assert grant.prefix == "/a&b/caf%C3%A9%20x/"
    assert "tw_acl=/a%26b/caf%25C3%25A9%2520x/&" in grant.query
    assert verdict_of(verifier, grant.url("/a&b/café x/1.ts")).ok


def test_the_query_is_signed(signer: UrlSigner, verifier: Verifier) -> None:
    url = signer.sign_url(ASSET + "?quality=high&lang=en", ttl=60)
    assert url.startswith(ASSET + "?quality=high&lang=en&tw_exp=")
    assert verdict_of(verifier, url).ok
    for changed in (
        url.replace("quality=high", "quality=low"),
        url.replace("lang=en&", ""),
        url + "&extra=1",
        url.replace("?quality=high&", "?"),
    ):
        assert verdict_of(verifier, changed).reason is Reason.BAD_SIGNATURE, changed


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", Reason.MISSING),
        ("a=1", Reason.MISSING),
        ("tw_exp=1800000060&tw_kid=2025-06", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_sig=abc", Reason.MALFORMED),
        ("tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=nope&tw_sig=abc", Reason.UNKNOWN_KEY),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=abc", Reason.BAD_SIGNATURE),
        ("tw_exp=018000000&tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),  # leading zero
        ("tw_exp=-5&tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),
        ("tw_exp=1e9&tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),
        ("tw_exp=99999999999999&tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),
        ("tw_exp=%D9%A1&tw_kid=2025-06&tw_sig=abc", Reason.MALFORMED),  # Arabic-Indic one
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=abc&tw_ip=", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=abc&tw_sub=", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=abc&tw_ip=300.1.1.1", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=abc&tw_ip=10.0.0.1/8", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=%FF", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=%zz", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=é", Reason.BAD_SIGNATURE),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=a&tw_acl=/x", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=a&tw_acl=/x/../", Reason.MALFORMED),
        ("tw_exp=1800000060&tw_kid=2025-06&tw_sig=\udc80", Reason.MALFORMED),  # surrogateescape
    ],
)
def test_refusals_are_typed_never_raised(verifier: Verifier, query: str, reason: Reason) -> None:
    verdict = verifier.verify_request("/videos/a.ts", query, None)
    assert verdict.reason is reason
    assert verdict.status == reason.status
    assert (verdict.subject, verdict.kid, verdict.expires) == (None, None, None)


def test_check_raises_the_reason(signer: UrlSigner, verifier: Verifier) -> None:
    url = signer.sign_url(ASSET, ttl=60)
    assert verifier.check(url).ok
    with pytest.raises(SignedUrlError) as caught:
        verifier.check(url.replace("00001", "00002"))
    assert caught.value.reason is Reason.BAD_SIGNATURE
    assert verifier.verify_url("ftp://x/y").reason is Reason.MALFORMED
    path, query = split(url)
    assert verifier.verify_request("/\udc80" + path, query, None).reason is Reason.MALFORMED


def test_the_module_level_function_is_the_same_check(keys: KeySet, signer: UrlSigner) -> None:
    path, query = split(signer.sign_url(ASSET, ttl=60))
    assert verify_request(path, query, None, NOW + 1, keys=keys).ok
    assert verify_request(path, query, None, NOW + 60, keys=keys).reason is Reason.EXPIRED
    assert verify_request(path, query, None, NOW + 70, keys=keys, leeway=30).ok


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "exactly one"),
        ({"ttl": 60, "expires": NOW + 60}, "exactly one"),
        ({"ttl": 0}, "ttl must be"),
        ({"ttl": 8 * 86400}, "ttl must be"),
        ({"ttl": True}, "ttl must be"),
        ({"expires": NOW}, "in the future"),
        ({"expires": NOW + 30, "not_before": NOW + 30}, "before the expiry"),
        ({"ttl": 60, "subject": ""}, "subject"),
        ({"ttl": 60, "subject": "x" * 257}, "subject"),
        ({"ttl": 60, "subject": "\ud800"}, "not valid Unicode"),
        ({"ttl": 60, "client_ip": "example.com"}, "not an IP"),
    ],
)
def test_bad_claims_are_refused_at_signing(
    signer: UrlSigner, claims: dict[str, object], message: str
) -> None:
    with pytest.raises(SignedUrlError, match=message) as caught:
        signer.sign_url(ASSET, **claims)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.example/a",
        "cdn.example/a",
        "//cdn.example/a",
        "https://user:pw@cdn.example/a",
        "https://cdn.example/a#frag",
        "https://cdn.example/a\tb",
        "https://cdn.example/a?tw_exp=1",
        "https://cdn.example/a/../b",
    ],
)
def test_urls_that_cannot_be_signed(signer: UrlSigner, url: str) -> None:
    with pytest.raises(SignedUrlError):
        signer.sign_url(url, ttl=60)


def test_keys_refuse_weak_or_confusing_material() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey("k", b"short")
    with pytest.raises(ValueError, match="key id"):
        SigningKey("k\n1", SECRET_1)
    with pytest.raises(ValueError, match="duplicate"):
        KeySet(SigningKey("k", SECRET_1), [SigningKey("k", SECRET_2)])
    with pytest.raises(ValueError, match="current"):
        KeySet.from_secrets({"a": SECRET_1}, current="b")
    ring = KeySet.from_secrets({"a": SECRET_1, "b": SECRET_2}, current="b")
    assert ring.current.kid == "b"
    assert ring.kids == ("b", "a")
    assert len(SigningKey.generate("g").mac.digest(b"m")) == 32


def test_nothing_secret_in_reprs(signer: UrlSigner, keys: KeySet, verifier: Verifier) -> None:
    bound = signer.bind(ttl=60)
    url = bound.sign_url(ASSET)
    signature = url.rsplit("tw_sig=", 1)[1]
    texts = [repr(keys), repr(keys.current), repr(bound), repr(verdict_of(verifier, url))]
    grant = bound.sign_prefix("/videos/")
    texts += [repr(keys.current.mac), str(SignedUrlError(Reason.BAD_SIGNATURE)), repr(grant)]
    assert grant.query.rsplit("tw_sig=", 1)[1] not in repr(grant)
    for text in texts:
        assert signature not in text
        assert SECRET_1.hex() not in text
        assert repr(SECRET_1)[2:20] not in text
    assert "redacted" in repr(keys.current)
