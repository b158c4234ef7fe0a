"""P2: cached validation including the revocation checks, per second on one core, and the
bytes each cached token costs.

Each call gets its own header string object (as an ASGI server makes one per request), so the
string hash is computed every time. The mirror holds 100,000 revoked jtis and 10,000 subject
watermarks. Two regimes: steady (the revocation generation did not move since the entry was
checked: one integer compare) and churn (a revocation lands before every call, so every hit
re-runs the jti, subject, session and client lookups).
"""

from __future__ import annotations

import time
import tracemalloc

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec

from bench import fixtures
from bench.harness import Figure, us
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import RevocationMirror

TOKENS = 1000
CALLS = 300_000
MEMORY_ENTRIES = 10_000


def _mirror() -> RevocationMirror:
    mirror = RevocationMirror()
    far = time.time() + 86400
    for i in range(100_000):
        mirror.apply(Revocation(RevocationKind.JTI, f"revoked-{i}", None, far))
    for i in range(10_000):
        mirror.apply(Revocation(RevocationKind.SUBJECT, f"other-{i}", time.time(), far))
    return mirror


def _hit_rate(churn: bool) -> float:
    ring = fixtures.keyring("ES256")
    tokens = fixtures.mint_many(ring, TOKENS)
    mirror = _mirror()
    validator = fixtures.validator(ring, mirror)
    for token in tokens:
        validator.authenticate_sync("Bearer " + token, fixtures.SCOPES)
    # Fresh str objects: the hash is not cached on them yet.
    headers = ["".join(("Bearer ", tokens[i % TOKENS])) for i in range(CALLS)]
    authenticate = validator.authenticate_sync
    scopes = fixtures.SCOPES
    start = time.perf_counter()
    if churn:
        for header in headers:
            mirror.generation += 1  # what any revocation does; forces the full lookups
            authenticate(header, scopes)
    else:
        for header in headers:
            authenticate(header, scopes)
    return CALLS / (time.perf_counter() - start)


def _pyjwt_rate() -> float:
    ring = fixtures.keyring("ES256")
    tokens = fixtures.mint_many(ring, 500)
    private = ring.active().private
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError(f"an ES256 keyring holds EC keys, not {type(private).__name__}")
    key = private.public_key()
    start = time.perf_counter()
    for token in tokens:
        pyjwt.decode(
            token,
            key,
            algorithms=["ES256"],
            audience=fixtures.AUDIENCE,
            issuer=fixtures.ISSUER,
            leeway=30,
        )
    return len(tokens) / (time.perf_counter() - start)


def _bytes_per_entry() -> float:
    ring = fixtures.keyring("ES256")
    tokens = fixtures.mint_many(ring, MEMORY_ENTRIES)
    validator = fixtures.validator(ring, cache=MEMORY_ENTRIES)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for token in tokens:
        # The header string is built here, as a server would, so the cache's copy is counted.
        validator.authenticate_sync("".join(("Bearer ", token)), fixtures.SCOPES)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / MEMORY_ENTRIES


def run() -> list[Figure]:
    steady = max(_hit_rate(churn=False) for _ in range(3))
    churn = max(_hit_rate(churn=True) for _ in range(3))
    pyjwt_rate = _pyjwt_rate()
    per_entry = _bytes_per_entry()
    print(
        f"  P2: steady {steady:,.0f}/s ({us(1 / steady)}), churn {churn:,.0f}/s "
        f"({us(1 / churn)}), PyJWT decode {pyjwt_rate:,.0f}/s, {per_entry:.0f} B per cached token"
    )
    return [
        Figure(
            "P2",
            steady / 1e6,
            "M cached validations/s/core, revocation generation checked",
            [
                f"{steady / pyjwt_rate:.0f}× PyJWT",
                f"{churn / 1e6:.2f} M/s when every hit re-runs the revocation lookups",
                f"{per_entry:.0f} B per cached token",
            ],
        )
    ]
