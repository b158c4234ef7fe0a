"""P1: cold validation, a fresh token per call, full checklist, against PyJWT and the raw verify.

Every contender does the same work: take the header, verify the signature, check exp/nbf/iat
(with leeway), iss, aud, typ and the required scopes. Ours also runs the revocation checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench import fixtures
from bench.harness import Figure, interleaved, median_ratio, us
from tokenward.tokens.b64 import b64url_decode

COUNTS = {"ES256": 1500, "RS256": 1500}
ROUNDS = 7


def _pyjwt_runner(ring: Any, headers: list[str], alg: str) -> Callable[[], int]:
    key = ring.active().private.public_key()
    decoder = pyjwt.PyJWT()
    options = {"require": ["exp", "iat", "iss", "aud", "sub", "jti"]}

    def run() -> int:
        for header in headers:
            decoded = decoder.decode_complete(
                header[7:],
                key,
                algorithms=[alg],
                audience=fixtures.AUDIENCE,
                issuer=fixtures.ISSUER,
                leeway=30,
                options=options,  # type: ignore[arg-type]
            )
            if decoded["header"].get("typ") != "at+jwt":
                raise ValueError("typ")
            if not set(decoded["payload"]["scope"].split()) >= fixtures.SCOPES:
                raise ValueError("scope")
        return len(headers)

    return run


def _raw_runner(ring: Any, tokens: list[str], alg: str) -> Callable[[], int]:
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
    if alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def run() -> int:
            for message, signature in prepared:
                key.verify(signature, message, ecdsa)
            return len(prepared)
    else:
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

        def run() -> int:
            for message, signature in prepared:
                key.verify(signature, message, pkcs1, sha256)
            return len(prepared)

    return run


def measure(alg: str) -> dict[str, list[float]]:
    ring = fixtures.keyring(alg)
    tokens = fixtures.mint_many(ring, COUNTS[alg])
    headers = ["Bearer " + token for token in tokens]
    validator = fixtures.validator(ring)

    def ours() -> int:
        validator.cache.clear()  # every call is a miss: the cold path
        for header in headers:
            validator.authenticate_sync(header, fixtures.SCOPES)
        return len(headers)

    return interleaved(
        {
            "ours": ours,
            "pyjwt": _pyjwt_runner(ring, headers, alg),
            "raw": _raw_runner(ring, tokens, alg),
        },
        ROUNDS,
    )


def run() -> list[Figure]:
    details = []
    headline = 0.0
    for alg in ("ES256", "RS256"):
        times = measure(alg)
        vs_pyjwt = median_ratio(times["pyjwt"], times["ours"])
        vs_raw = median_ratio(times["ours"], times["raw"])
        best = {name: min(values) for name, values in times.items()}
        print(
            f"  P1 {alg}: ours {us(best['ours'])}, PyJWT {us(best['pyjwt'])}, "
            f"raw verify {us(best['raw'])} -> {vs_pyjwt:.2f}x PyJWT, {vs_raw:.2f}x raw"
        )
        if alg == "ES256":
            headline = vs_pyjwt
            details.append(f"{vs_raw:.2f}× raw verify")
        else:
            details.append(f"RS256 {vs_pyjwt:.2f}× PyJWT, {vs_raw:.2f}× raw verify")
    return [Figure("P1", headline, "ES256 cold, ×PyJWT", details)]
