"""DPoP: cold validation of a DPoP-bound token with its proof ÷ cold Bearer validation, and the
cached path, where the token is a cache hit but every request brings a new proof to verify.

The proof is a second ES256 signature per request, so the cold ratio should be near 2x and the
cached path is bounded below by one ES256 verify (printed beside it as the floor).
"""

from __future__ import annotations

import asyncio
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench import fixtures
from bench.harness import Figure, us
from tokenward.client.dpop import DpopKey
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.store.memory import MemoryReplayCache
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy

COUNT = 1000
URL = "https://api.bench/orders"


def _validator(ring: object) -> Validator:
    return Validator(
        issuer=fixtures.ISSUER,
        audience=fixtures.AUDIENCE,
        keys=KeyringKeySource(ring),  # type: ignore[arg-type]
        revocations=RevocationMirror(),
        cache_size=100_000,
        dpop=DpopVerifier(MemoryReplayCache(max_entries=10_000_000).first_use, None),
    )


async def _measure() -> dict[str, float]:
    ring = fixtures.keyring("ES256")
    key = DpopKey()
    strategy = JwtAccessTokenStrategy(ring, fixtures.ISSUER)
    bearer = fixtures.mint_many(ring, COUNT)
    bound = [
        strategy.mint_sync(
            TokenGrant(
                f"u{i}", "c", (fixtures.AUDIENCE,), fixtures.SCOPES, cnf={"jkt": key.thumbprint}
            )
        ).value
        for i in range(COUNT)
    ]
    proofs = [key.proof("GET", URL, access_token=token) for token in bound]
    results: dict[str, float] = {}

    validator = _validator(ring)
    start = time.perf_counter()
    for token in bearer:
        await validator.authenticate_request(
            "Bearer " + token, fixtures.SCOPES, method="GET", url=URL
        )
    results["bearer_cold"] = (time.perf_counter() - start) / COUNT

    validator = _validator(ring)
    start = time.perf_counter()
    for token, proof in zip(bound, proofs, strict=True):
        await validator.authenticate_request(
            "DPoP " + token, fixtures.SCOPES, dpop_proof=proof, method="GET", url=URL
        )
    results["dpop_cold"] = (time.perf_counter() - start) / COUNT

    same = bound[0]
    fresh = [key.proof("GET", URL, access_token=same) for _ in range(COUNT)]
    await validator.authenticate_request(
        "DPoP " + same, dpop_proof=key.proof("GET", URL, access_token=same), method="GET", url=URL
    )
    start = time.perf_counter()
    for proof in fresh:
        await validator.authenticate_request(
            "DPoP " + same, fixtures.SCOPES, dpop_proof=proof, method="GET", url=URL
        )
    results["dpop_cached"] = (time.perf_counter() - start) / COUNT

    private = ec.generate_private_key(ec.SECP256R1())
    signature = private.sign(b"x" * 300, ec.ECDSA(hashes.SHA256()))
    public = private.public_key()
    start = time.perf_counter()
    for _ in range(COUNT):
        public.verify(signature, b"x" * 300, ec.ECDSA(hashes.SHA256()))
    results["verify_floor"] = (time.perf_counter() - start) / COUNT
    return results


def run() -> list[Figure]:
    best: dict[str, float] = {}
    for _ in range(3):
        for name, value in asyncio.run(_measure()).items():
            best[name] = min(best.get(name, value), value)
    cold = best["dpop_cold"] / best["bearer_cold"]
    cached = best["dpop_cached"] / best["verify_floor"]
    print(
        f"  DPoP: bearer cold {us(best['bearer_cold'])}, DPoP cold {us(best['dpop_cold'])}, "
        f"DPoP cached token + new proof {us(best['dpop_cached'])}, "
        f"one ES256 verify {us(best['verify_floor'])}"
    )
    return [
        Figure(
            "DPoP",
            cold,
            "cold DPoP validation ÷ cold Bearer validation",
            [
                f"cached token with a new proof {us(best['dpop_cached'])} "
                f"= {cached:.2f}× one ES256 verify (the floor)",
            ],
        )
    ]
