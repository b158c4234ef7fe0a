"""serving.tls: TLS settings checks, and the proxy-header middleware (who is believed, what is
parsed, how often)."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.pki import Pki
from tokenward.config import Settings
from tokenward.core.proxies import parse_networks
from tokenward.serving.tls import (
    CERTIFICATE_KEY,
    FROM_CONNECTION,
    MAX_HEADER_BYTES,
    SOURCE_KEY,
    TLS_EXTENSION,
    ProxyCertificateMiddleware,
    TlsSettings,
    peer_certificate,
    proxied_certificate_only,
)


def test_client_certificates_need_cas() -> None:
    with pytest.raises(ValueError, match="ssl_ca_certs"):
        TlsSettings("server.pem", "server.key", cert_reqs="optional")
    with pytest.raises(ValueError, match="one of"):
        TlsSettings("server.pem", cert_reqs="maybe")
    assert TlsSettings("s.pem", "s.key", "ca.pem", "required").uvicorn_options()["ssl_cert_reqs"]


def test_settings_refuse_half_configurations() -> None:
    with pytest.raises(ValueError, match="need ssl_certfile"):
        Settings(ssl_cert_reqs="optional", ssl_ca_certs="ca.pem")
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(mtls_certificate_header="X-SSL-Client-Cert")
    assert not Settings().mtls_enabled
    assert Settings(trusted_proxies="10.0.0.1", mtls_certificate_header="X-Cert").mtls_enabled


class Seen:
    def __init__(self) -> None:
        self.scopes: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)


def _scope(peer: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "client": (peer, 5000), "headers": list(headers)}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return Pki(tmp_path_factory.mktemp("pki")).issue("c", "c").pem


async def _through(middleware: ProxyCertificateMiddleware, scope: dict[str, Any]) -> Any:
    await middleware(scope, None, None)
    return peer_certificate(scope)


@pytest.mark.anyio
async def test_believed_only_from_a_trusted_peer(pem: str) -> None:
    app = Seen()
    middleware = ProxyCertificateMiddleware(
        app, header="X-SSL-Client-Cert", trusted=parse_networks(["10.0.0.0/8"])
    )
    header = (b"x-ssl-client-cert", quote(pem, safe="").encode())
    assert await _through(middleware, _scope("10.1.2.3", header)) is not None
    assert await _through(middleware, _scope("192.0.2.1", header)) is None
    assert len(app.scopes) == 2  # the request goes on either way, without a certificate


@pytest.mark.anyio
async def test_malformed_duplicated_or_oversized_headers_count_as_none(pem: str) -> None:
    middleware = ProxyCertificateMiddleware(
        Seen(), header="X-SSL-Client-Cert", trusted=parse_networks(["127.0.0.1"])
    )
    name = b"x-ssl-client-cert"
    good = (name, pem.encode())
    for headers in (
        [(name, b"garbage")],
        [good, good],
        [(name, b"A" * (MAX_HEADER_BYTES + 1))],
    ):
        assert await _through(middleware, _scope("127.0.0.1", *headers)) is None


@pytest.mark.anyio
async def test_each_distinct_certificate_is_parsed_once(pem: str, tmp_path: Path) -> None:
    middleware = ProxyCertificateMiddleware(
        Seen(), header="X-SSL-Client-Cert", trusted=parse_networks(["127.0.0.1"])
    )
    header = (b"x-ssl-client-cert", pem.encode())
    first = await _through(middleware, _scope("127.0.0.1", header))
    second = await _through(middleware, _scope("127.0.0.1", header))
    assert first is second  # the same parsed certificate and thumbprint: no second hash


@pytest.mark.anyio
async def test_a_trusted_proxys_bad_header_drops_its_connection_certificate(pem: str) -> None:
    """From a trusted proxy the header alone speaks for the client: a malformed one leaves no
    certificate, not the one the proxy's own TLS connection carries; a check for an external
    proxy keeps only a header's certificate."""
    middleware = ProxyCertificateMiddleware(
        Seen(), header="X-SSL-Client-Cert", trusted=parse_networks(["127.0.0.1"])
    )
    header = (b"x-ssl-client-cert", pem.encode())
    cert = await _through(middleware, _scope("127.0.0.1", header))
    assert cert is not None
    proxy_own = {CERTIFICATE_KEY: cert, SOURCE_KEY: FROM_CONNECTION}

    def on_connection(peer: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {**_scope(peer, *headers), "extensions": {TLS_EXTENSION: proxy_own}}

    garbled = (b"x-ssl-client-cert", b"garbage")
    assert await _through(middleware, on_connection("127.0.0.1", garbled)) is None
    # From an untrusted peer the header is ignored: its own connection's certificate stands.
    assert await _through(middleware, on_connection("192.0.2.1", garbled)) is cert
    assert proxied_certificate_only(on_connection("127.0.0.1")) == {}
    described = on_connection("127.0.0.1", header)
    await middleware(described, None, None)
    assert TLS_EXTENSION in proxied_certificate_only(described)
