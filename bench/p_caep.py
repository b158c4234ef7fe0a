"""CAEP: the cost of a Security Event Token at both ends, beside jwcrypto doing the same.

- make: our transmitter's claims and ES256 signature (`set_claims` + `TokenSigner`) ÷ jwcrypto
  signing the same claims;
- receive: our receiver taking one pushed SET (parse, ES256 verify with the transmitter's key
  pinned, iss/aud/iat/jti checks, the replay cache's first use, the subject lookup; an unknown
  subject, so no action) ÷ jwcrypto verifying the same SET and decoding its claims.
Interleaved rounds, medians of per-round ratios; in process, no network.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from collections.abc import Callable

import structlog
from jwcrypto import jwk, jwt

from bench import fixtures
from bench.harness import Figure, interleaved, load_note, median_ratio, us
from tokenward.core.signals import SESSION_REVOKED, SecuritySignal
from tokenward.oauth.ssf.events import SET_TYPE, set_claims
from tokenward.oauth.ssf.signing import TokenSigner
from tokenward.services.ssf_receiver import SetReceiver, Transmitter
from tokenward.store.memory import MemoryReplayCache, MemoryUserStore
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks
from tokenward.tokens.key_sources import StaticKeySource
from tokenward.tokens.keyring import Keyring

BATCH = 300
ROUNDS = 7
ISSUER = "https://tx.bench"
AUDIENCE = "https://rx.bench"


class _Keys:
    def __init__(self, jwks: dict[str, list[dict[str, str]]]) -> None:
        self._source = StaticKeySource(key_set_from_jwks(jwks))

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._source.get(kid)

    async def refresh(self, *, unknown_kid: bool) -> bool:
        return False


class _Nobody:
    async def force_logout(self, user_id: str) -> dict[str, object]:
        raise AssertionError("the bench's subjects are unknown: nothing is done")

    async def revoke(self, *, subject: str | None = None) -> dict[str, object]:
        raise AssertionError("the bench's subjects are unknown: nothing is done")


def run() -> list[Figure]:
    ring = fixtures.keyring("ES256")
    signer = TokenSigner({"ES256": ring}, lambda: "ES256")
    signal = SecuritySignal(SESSION_REVOKED, time.time(), "user-1", "sid-1")

    def claims() -> dict[str, object]:
        return set_claims(ISSUER, AUDIENCE, signal, time.time())

    made = _make(ring, signer, claims)
    # The receiver logs each SET: rendered as usual, but returned rather than printed, so the
    # terminal's speed is not measured.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    try:
        received = _receive(ring, lambda: [signer.sign(claims(), SET_TYPE) for _ in range(BATCH)])
    finally:
        structlog.reset_defaults()
    mine, theirs = statistics.median(received["ours"]), statistics.median(received["jwcrypto"])
    return [
        Figure(
            "CAEP",
            median_ratio(received["ours"], received["jwcrypto"]),
            "SET received, ×jwcrypto verify",
            [
                f"receive {us(mine)}, jwcrypto {us(theirs)}",
                f"make {us(statistics.median(made['ours']))} "
                f"({median_ratio(made['ours'], made['jwcrypto']):.2f}× jwcrypto sign)",
                f"in process, ES256; {load_note()}",
            ],
        )
    ]


def _make(
    ring: Keyring, signer: TokenSigner, claims: Callable[[], dict[str, object]]
) -> dict[str, list[float]]:
    private = jwk.JWK.from_pyca(ring.active().private)
    header = {"alg": "ES256", "kid": ring.active().kid, "typ": SET_TYPE}

    def ours() -> int:
        for _ in range(BATCH):
            signer.sign(claims(), SET_TYPE)
        return BATCH

    def theirs() -> int:
        for _ in range(BATCH):
            token = jwt.JWT(header=header, claims=claims())
            token.make_signed_token(private)
            token.serialize()
        return BATCH

    return interleaved({"ours": ours, "jwcrypto": theirs}, ROUNDS)


def _receive(ring: Keyring, fresh: Callable[[], list[str]]) -> dict[str, list[float]]:
    public = jwk.JWKSet.from_json(json.dumps(ring.jwks()))
    receiver = SetReceiver(
        [Transmitter(ISSUER, _Keys(ring.jwks()), "ES256")],
        frozenset({AUDIENCE}),
        MemoryReplayCache(time.time),
        MemoryUserStore(),
        _Nobody(),
        _Nobody(),
    )
    loop = asyncio.new_event_loop()

    async def receive_all(tokens: list[str]) -> None:
        for token in tokens:
            await receiver.receive(token)

    def ours(tokens: list[str]) -> None:
        loop.run_until_complete(receive_all(tokens))

    def theirs(tokens: list[str]) -> None:
        for token in tokens:
            json.loads(jwt.JWT(jwt=token, key=public, algs=["ES256"]).claims)

    received: dict[str, list[float]] = {"ours": [], "jwcrypto": []}
    for _ in range(ROUNDS):  # interleaved; fresh SETs each round (the receiver refuses replays)
        for name, receive in (("ours", ours), ("jwcrypto", theirs)):
            tokens = fresh()
            gc.collect()
            start = time.perf_counter()
            receive(tokens)
            received[name].append((time.perf_counter() - start) / BATCH)
    loop.close()
    return received
