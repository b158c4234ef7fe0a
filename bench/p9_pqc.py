"""P9: post-quantum tokens (ML-DSA, RFC 9964) beside ES256.

- Cold validation, a fresh token per call, the same checklist as P1 (our validator, cache
  cleared), for ML-DSA-44/65/87 ÷ ES256, in interleaved rounds. The bare `cryptography`
  verify of the same tokens is timed beside it, so the ratio can be split into what the
  primitive costs and what our path adds.
- Signing (issuance) rate of access tokens per algorithm: the JWT strategy's `mint_sync`.
- Token bytes per algorithm (the same claims), and cached validation ML-DSA-44 ÷ ES256 (the
  cache path is the same whatever signed the token, so it should be ~1).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench import fixtures
from bench.harness import Figure, interleaved, median_ratio, us
from tokenward.tokens.b64 import b64url_decode
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy

ALGS = ("ES256", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
COUNT = 400
ROUNDS = 5
SIGN_COUNT = 200


def _bare(ring: Any, tokens: list[str], alg: str) -> Callable[[], int]:
    """The primitive alone: `cryptography`'s verify on pre-decoded signatures."""
    key = ring.active().private.public_key()
    prepared = []
    for token in tokens:
        signing_input, _, signature = token.rpartition(".")
        raw = b64url_decode(signature)
        if alg == "ES256":
            raw = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
        prepared.append((signing_input.encode(), raw))
    ecdsa = ec.ECDSA(hashes.SHA256())
    verify = key.verify

    def run() -> int:
        if alg == "ES256":
            for message, signature in prepared:
                verify(signature, message, ecdsa)
        else:
            for message, signature in prepared:
                verify(signature, message)
        return len(prepared)

    return run


def _cold(validator: Any, headers: list[str]) -> Callable[[], int]:
    def run() -> int:
        validator.cache.clear()  # every call is a miss: the cold path
        for header in headers:
            validator.authenticate_sync(header, fixtures.SCOPES)
        return len(headers)

    return run


def _cached(validator: Any, headers: list[str]) -> Callable[[], int]:
    for header in headers:
        validator.authenticate_sync(header, fixtures.SCOPES)

    def run() -> int:
        for _ in range(10):
            for header in headers:
                validator.authenticate_sync(header, fixtures.SCOPES)
        return 10 * len(headers)

    return run


def _signing(ring: Any) -> Callable[[], int]:
    strategy = JwtAccessTokenStrategy(ring, fixtures.ISSUER)
    grant = TokenGrant("user-1", "bench-client", (fixtures.AUDIENCE,), fixtures.SCOPES, "sid-1")

    def run() -> int:
        for _ in range(SIGN_COUNT):
            strategy.mint_sync(grant)
        return SIGN_COUNT

    return run


def run() -> list[Figure]:
    rings = {alg: fixtures.keyring(alg) for alg in ALGS}
    tokens = {alg: fixtures.mint_many(rings[alg], COUNT) for alg in ALGS}
    headers = {alg: ["Bearer " + token for token in tokens[alg]] for alg in ALGS}
    contenders: dict[str, Callable[[], int]] = {}
    for alg in ALGS:
        contenders[f"cold {alg}"] = _cold(fixtures.validator(rings[alg]), headers[alg])
        contenders[f"bare {alg}"] = _bare(rings[alg], tokens[alg], alg)
        contenders[f"sign {alg}"] = _signing(rings[alg])
    for alg in ("ES256", "ML-DSA-44"):
        contenders[f"cached {alg}"] = _cached(fixtures.validator(rings[alg]), headers[alg])
    times = interleaved(contenders, ROUNDS)

    cold = {alg: median_ratio(times[f"cold {alg}"], times["cold ES256"]) for alg in ALGS}
    bare = {alg: median_ratio(times[f"bare {alg}"], times["bare ES256"]) for alg in ALGS}
    size = {alg: round(statistics.mean(len(token) for token in tokens[alg])) for alg in ALGS}
    rate = {alg: 1 / statistics.median(times[f"sign {alg}"]) for alg in ALGS}
    cached = median_ratio(times["cached ML-DSA-44"], times["cached ES256"])
    for alg in ALGS:
        ours, primitive = min(times[f"cold {alg}"]), min(times[f"bare {alg}"])
        print(
            f"  P9 {alg}: cold {us(ours)} (bare verify {us(primitive)}, path "
            f"{us(ours - primitive)}), {cold[alg]:.2f}x ES256 cold, {bare[alg]:.2f}x bare; "
            f"signs {rate[alg]:,.0f}/s; {size[alg]} bytes"
        )
    print(f"  P9 cached ML-DSA-44 / ES256: {cached:.2f}x")
    details = [
        f"65 {cold['ML-DSA-65']:.2f}×, 87 {cold['ML-DSA-87']:.2f}×",
        "bare verify " + ", ".join(f"{alg[-2:]} {bare[alg]:.2f}×" for alg in ALGS[1:]),
        "signs/s " + ", ".join(f"{alg} {rate[alg]:,.0f}" for alg in ALGS),
        "bytes " + ", ".join(f"{alg} {size[alg]}" for alg in ALGS),
        f"cached 44 {cached:.2f}× ES256",
    ]
    return [Figure("P9", cold["ML-DSA-44"], "ML-DSA-44 cold ÷ ES256 cold", details)]
