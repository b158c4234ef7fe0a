"""DPoP proof verification (RFC 9449 §4.3) against hand-made good and bad proofs."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import FrozenClock
from tokenward.client.dpop import DpopKey
from tokenward.core.errors import JoseError
from tokenward.store.memory import MemoryReplayCache
from tokenward.tokens.dpop import (
    NONCE_WINDOW,
    DpopError,
    DpopNonces,
    DpopVerifier,
    jwk_thumbprint,
    normalised_htu,
)
from tokenward.tokens.jws import sign_compact

URL = "https://as.example/token"

pytestmark = pytest.mark.anyio


def verifier(clock: FrozenClock, nonces: bool = False) -> DpopVerifier:
    return DpopVerifier(
        MemoryReplayCache(clock).first_use, DpopNonces(b"n" * 32, clock) if nonces else None, clock
    )


async def test_good_proof_gives_the_key_thumbprint(clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    proof = await verifier(clock).verify(key.proof("POST", URL), method="POST", url=URL)
    assert proof.jkt == key.thumbprint


async def test_htu_ignores_query_and_fragment_and_case(clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    proof = key.proof("POST", "HTTPS://AS.example:443/token")
    await verifier(clock).verify(proof, method="post", url=URL + "?x=1#f")


@pytest.mark.parametrize(
    ("signed", "requested"),
    [
        ("https://as.example/%7Eu/./token", "https://as.example/~u/token"),
        ("https://as.example/a/../token", "https://AS.example:443/%74oken"),
        ("https://as.example/a%2fb", "https://as.example/a%2Fb"),
    ],
)
async def test_htu_is_compared_after_normalisation(
    clock: FrozenClock, signed: str, requested: str
) -> None:
    proof = forged(clock, {}, {"htm": "GET", "htu": signed})  # signed as written, unnormalised
    await verifier(clock).verify(proof, method="GET", url=requested)


@pytest.mark.parametrize(
    ("signed", "requested"),
    [
        ("https://as.example/a%2Fb", "https://as.example/a/b"),
        ("https://evil@as.example/token", URL),
        ("https://as.example/tok\ten", URL),
    ],
)
async def test_htu_that_only_a_lenient_parser_equates_is_refused(
    clock: FrozenClock, signed: str, requested: str
) -> None:
    proof = forged(clock, {}, {"htm": "GET", "htu": signed})
    with pytest.raises(DpopError, match="htu"):
        await verifier(clock).verify(proof, method="GET", url=requested)


async def test_replayed_proof_rejected(clock: FrozenClock) -> None:
    key, check = DpopKey(clock=clock), verifier(clock)
    proof = key.proof("POST", URL)
    await check.verify(proof, method="POST", url=URL)
    with pytest.raises(DpopError, match="already used"):
        await check.verify(proof, method="POST", url=URL)


@pytest.mark.parametrize(
    ("method", "url", "message"),
    [
        ("GET", URL, "htm"),
        ("POST", "https://as.example/other", "htu"),
        ("POST", "https://evil.example/token", "htu"),
    ],
)
async def test_proof_for_another_request_rejected(
    clock: FrozenClock, method: str, url: str, message: str
) -> None:
    proof = DpopKey(clock=clock).proof("POST", URL)
    with pytest.raises(DpopError, match=message):
        await verifier(clock).verify(proof, method=method, url=url)


@pytest.mark.parametrize("age", [-121, 31])
async def test_iat_window(clock: FrozenClock, age: float) -> None:
    proof = DpopKey(clock=clock).proof("POST", URL)
    clock.advance(-age)
    with pytest.raises(DpopError, match="iat"):
        await verifier(clock).verify(proof, method="POST", url=URL)


async def test_ath_must_match_the_access_token(clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    proof = key.proof("GET", URL, access_token="token-a")
    await verifier(clock).verify(proof, method="GET", url=URL, access_token="token-a")
    with pytest.raises(DpopError, match="ath"):
        await verifier(clock).verify(
            key.proof("GET", URL, access_token="token-a"),
            method="GET",
            url=URL,
            access_token="token-b",
        )


async def test_nonce_required_and_rotating(clock: FrozenClock) -> None:
    check, key = verifier(clock, nonces=True), DpopKey(clock=clock)
    with pytest.raises(DpopError) as missing:
        await check.verify(key.proof("POST", URL), method="POST", url=URL)
    assert missing.value.use_nonce
    nonce = check.nonce()
    assert nonce is not None
    await check.verify(key.proof("POST", URL, nonce=nonce), method="POST", url=URL)
    clock.advance(600)  # two windows later the old nonce is stale
    with pytest.raises(DpopError) as stale:
        await check.verify(key.proof("POST", URL, nonce=nonce), method="POST", url=URL)
    assert stale.value.use_nonce


def forged(
    clock: FrozenClock, header: dict[str, object], claims: dict[str, object] | None = None
) -> str:
    key = DpopKey(clock=clock)
    body = {"jti": "abcdefgh123", "htm": "POST", "htu": URL, "iat": int(clock()), **(claims or {})}
    full = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk, **header}
    return sign_compact(full, orjson.dumps(body), key._sign)


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},
        {"alg": "HS256"},
        {"alg": "none"},
        {"jwk": None},
        {"jwk": {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
    ],
)
async def test_bad_headers_rejected(clock: FrozenClock, header: dict[str, object]) -> None:
    with pytest.raises(JoseError):
        await verifier(clock).verify(forged(clock, header), method="POST", url=URL)


async def test_private_key_in_jwk_rejected(clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    jwk = {**key.jwk, "d": "AAAA"}
    with pytest.raises(JoseError):
        await verifier(clock).verify(forged(clock, {"jwk": jwk}), method="POST", url=URL)


async def test_proof_signed_by_another_key_rejected(clock: FrozenClock) -> None:
    other = DpopKey(clock=clock)
    with pytest.raises(JoseError):
        await verifier(clock).verify(forged(clock, {"jwk": other.jwk}), method="POST", url=URL)


def test_thumbprint_is_rfc7638() -> None:
    # RFC 7638 §3.1 example key (RSA) and its thumbprint
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_normalised_htu_ipv6_and_ports() -> None:
    assert normalised_htu("http://[::1]:8080/a?b") == "http://[::1]:8080/a"
    assert normalised_htu("https://Example.COM:443/") == "https://example.com/"


def test_nonces_kept_per_window_are_those_the_key_derives(clock: FrozenClock) -> None:
    """The nonce of each window is remembered (every token answer carries one); what is
    remembered must be what the key derives for that window, and a new window a new nonce."""
    key = b"k" * 32
    kept = DpopNonces(key, clock)
    seen = []
    for _ in range(12):  # past the few windows kept at once
        nonce = kept.current()
        assert nonce == kept.current()
        fresh = DpopNonces(key, clock)  # derives, remembers nothing yet
        assert nonce == fresh.current()
        assert kept.valid(nonce)
        seen.append(nonce)
        clock.advance(NONCE_WINDOW)
        assert kept.valid(nonce)  # one window later: still accepted
        clock.advance(NONCE_WINDOW)
        assert not kept.valid(nonce)  # two: stale
        clock.advance(-NONCE_WINDOW)
    assert len(set(seen)) == len(seen)
    assert DpopNonces(b"other" * 8, clock).current() != kept.current()
