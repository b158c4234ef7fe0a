"""mTLS (RFC 8705): validating a certificate-bound token with the request's certificate ÷
validating a Bearer token, on the path every protected request takes (the validator's cache
hit through `resource.asgi.authenticate`, as the middleware, FastAPI dependency and gateway call
it) and cold (signature verified).

The certificate's thumbprint is computed once per connection (serving/tls.py: when the
connection is made, or once per distinct proxy-header value), so a request pays only the
binding check: one dict lookup of `cnf.x5t#S256` and one constant-time compare. The
per-connection cost is printed beside the figure: one SHA-256 of the DER certificate, and for
the proxy path a parse + hash of the PEM header, paid once per distinct certificate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import quote

from bench import fixtures
from bench.harness import Figure, interleaved, median_ratio, us
from tokenward.core.client_certs import ClientCertificate, from_header
from tokenward.guard import Validator
from tokenward.resource.asgi import authenticate
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy

COUNT = 50_000  # a batch of ~50 ms: long enough to outlast a scheduler slice
COLD = 300
ROUNDS = 9


def _certificate() -> tuple[bytes, str]:
    from tests.pki import Pki  # the test PKI, only when this figure runs

    with TemporaryDirectory() as tmp:
        issued = Pki(Path(tmp)).issue("bench", "bench", dns=("bench.example",))
        return issued.der, issued.pem


def run() -> list[Figure]:
    der, pem = _certificate()
    cert = ClientCertificate(der)
    ring = fixtures.keyring("ES256")
    strategy = JwtAccessTokenStrategy(ring, fixtures.ISSUER)

    def mint(count: int, bound: bool) -> list[str]:
        cnf = {"x5t#S256": cert.x5t_s256} if bound else None
        return [
            "Bearer "
            + strategy.mint_sync(
                TokenGrant(f"u{i}", "c", (fixtures.AUDIENCE,), fixtures.SCOPES, cnf=cnf)
            ).value
            for i in range(count)
        ]

    loop = asyncio.new_event_loop()
    bearer_hot, bound_hot = mint(1, False)[0], mint(1, True)[0]
    hot: Validator = fixtures.validator(ring)
    thumbprint = cert.x5t_s256

    async def cached(header: str, certificate: str | None) -> int:
        for _ in range(COUNT):
            await authenticate(hot, header, fixtures.SCOPES, certificate=certificate)
        return COUNT

    loop.run_until_complete(cached(bearer_hot, None))  # both in their caches from here on
    loop.run_until_complete(cached(bound_hot, thumbprint))

    def cold(bound: bool) -> int:
        headers = mint(COLD, bound)
        validator = fixtures.validator(ring)
        certificate = thumbprint if bound else None

        async def batch() -> None:
            for header in headers:
                await authenticate(validator, header, fixtures.SCOPES, certificate=certificate)

        loop.run_until_complete(batch())
        return COLD

    cpu: dict[str, float] = {}

    def timed(name: str, header: str, certificate: str | None) -> int:
        started = time.process_time()
        done = loop.run_until_complete(cached(header, certificate))
        cpu[name] = cpu.get(name, 0.0) + (time.process_time() - started) / done
        return done

    results = interleaved(
        {
            "bearer": lambda: timed("bearer", bearer_hot, None),
            "mtls": lambda: timed("mtls", bound_hot, thumbprint),
        },
        ROUNDS,
    )
    colds = interleaved({"bearer": lambda: cold(False), "mtls": lambda: cold(True)}, 3)
    loop.close()

    per_connection = min(_each(lambda: ClientCertificate(der), 2000) for _ in range(3))
    header = quote(pem, safe="")
    per_header = min(_each(lambda: from_header(header).parsed, 500) for _ in range(3))

    ratio = median_ratio(results["mtls"], results["bearer"])
    cold_ratio = median_ratio(colds["mtls"], colds["bearer"])
    cpu_ratio = cpu["mtls"] / cpu["bearer"]
    bearer_us = min(results["bearer"])
    mtls_us = min(results["mtls"])
    print(
        f"  cached: bearer {us(bearer_us)}, certificate-bound {us(mtls_us)} per request "
        f"(CPU {us(cpu['bearer'] / ROUNDS)} vs {us(cpu['mtls'] / ROUNDS)}); cold ratio "
        f"{cold_ratio:.2f}; per connection: thumbprint {us(per_connection)}, proxy header "
        f"parse + hash {us(per_header)} (once per distinct certificate)"
    )
    return [
        Figure(
            "MTLS",
            ratio,
            "certificate-bound ÷ Bearer validation, cache hit, median of interleaved rounds",
            [
                f"{us(mtls_us)} vs {us(bearer_us)}",
                f"CPU ×{cpu_ratio:.2f}",
                f"cold ×{cold_ratio:.2f}",
                f"thumbprint once per connection {us(per_connection)}",
            ],
        )
    ]


def _each(operation: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        operation()
    return (time.perf_counter() - started) / count
