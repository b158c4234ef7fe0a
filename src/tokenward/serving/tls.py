"""TLS client certificates (RFC 8705) for the server and the gateway: from the connection when we
terminate TLS ourselves, or from a trusted front proxy's header.

Either way the application reads one place, the ASGI TLS extension
(`scope["extensions"]["tls"]`, https://asgi.readthedocs.io/en/latest/extensions.html#tls):
`client_cert_chain` holds the PEM as the spec says, and `CERTIFICATE_KEY` the parsed
`ClientCertificate`, whose `x5t#S256` thumbprint is computed once:

- terminating TLS: uvicorn does not fill the extension, so `with_client_certificates` makes its
  protocol class read the peer certificate from the SSL object once per connection (at the
  first request), hash it, and hand every request of that connection the same extension dict;
- behind a proxy: `ProxyCertificateMiddleware` believes the header only when the connection
  comes from `trusted_proxies`, and parses each distinct header value once (a bounded LRU by
  value, so a proxy's keep-alive connection does not re-hash its client's certificate).
"""

from __future__ import annotations

import functools
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from tokenward.core.client_certs import (
    CertificateError,
    ClientCertificate,
    as_pem,
    from_header,
)
from tokenward.core.proxies import IpNetwork, in_networks, parse_ip

TLS_EXTENSION = "tls"
CERTIFICATE_KEY = "tokenward.client_certificate"
# Where the certificate came from: the connection's own TLS handshake, or a trusted proxy's
# header. A check for an external proxy (gateway/authz.py) must tell them apart: there the
# connection's peer is the proxy, so its certificate is the proxy's, never the client's.
SOURCE_KEY = "tokenward.client_certificate_source"
FROM_CONNECTION = "connection"
FROM_PROXY_HEADER = "proxy_header"
MAX_HEADER_BYTES = 16 * 1024
PARSED_HEADERS = 1024  # distinct proxy-header certificates kept parsed
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What `tokenward serve` (and the gateway's listener) terminate TLS with. `ca_certs`: the
    CAs client certificates must chain to; `cert_reqs`: none | optional | required."""

    certfile: str
    keyfile: str | None = None
    ca_certs: str | None = None
    cert_reqs: str = "none"

    def __post_init__(self) -> None:
        if self.cert_reqs not in CERT_REQS:
            raise ValueError(f"ssl cert_reqs must be one of {', '.join(CERT_REQS)}")
        if self.cert_reqs != "none" and not self.ca_certs:
            raise ValueError("asking for client certificates needs ssl_ca_certs (the CAs to trust)")

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_ca_certs": self.ca_certs,
            "ssl_cert_reqs": CERT_REQS[self.cert_reqs],
        }


def peer_certificate(scope: Scope) -> ClientCertificate | None:
    """The request's client certificate, or None. Never raises: a malformed one was dropped
    where it came in."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    tls = extensions.get(TLS_EXTENSION)
    if not tls:
        return None
    cert = tls.get(CERTIFICATE_KEY)
    return cert if isinstance(cert, ClientCertificate) else None


def proxied_certificate_only(scope: Scope) -> dict[str, Any]:
    """The scope's extensions keeping a client certificate only if a trusted proxy's header
    gave it: for requests where the connection's peer is a proxy describing someone else."""
    extensions = dict(scope.get("extensions") or {})
    tls = extensions.get(TLS_EXTENSION)
    if tls and tls.get(SOURCE_KEY) != FROM_PROXY_HEADER:
        del extensions[TLS_EXTENSION]
    return extensions


def _extension(cert: ClientCertificate, source: str) -> dict[str, Any]:
    return {
        "server_cert": None,
        "client_cert_chain": [as_pem(cert.der)],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
        CERTIFICATE_KEY: cert,
        SOURCE_KEY: source,
    }


def _with_tls(app: Asgi, tls: dict[str, Any], scope: Scope, receive: Any, send: Any) -> Any:
    extensions = scope.get("extensions")
    if extensions is None:
        scope["extensions"] = {TLS_EXTENSION: tls}
    else:
        extensions[TLS_EXTENSION] = tls
    return app(scope, receive, send)


def with_client_certificates(base: type[Any]) -> type[Any]:
    """`base` (a uvicorn HTTP protocol class) exposing the TLS peer certificate to the app.
    The certificate is read, hashed and wrapped once per connection, when the connection is
    made (the handshake is over by then); a connection without one costs nothing more."""

    class ClientCertificates(base):  # type: ignore[misc]
        app: Asgi

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                return
            der = ssl_object.getpeercert(binary_form=True)
            if not der:
                return
            try:
                cert = ClientCertificate(der)
            except CertificateError:
                return  # the handshake accepted it, so this is only our size bound
            # uvicorn runs `self.app` for each request; per connection, it now adds the TLS
            # extension first (one dict, shared by every request of the connection).
            self.app = functools.partial(_with_tls, self.app, _extension(cert, FROM_CONNECTION))

    ClientCertificates.__name__ = f"ClientCertificates{base.__name__}"
    return ClientCertificates


class ProxyCertificateMiddleware:
    """The client certificate a trusted TLS-terminating proxy forwards in `header` (PEM,
    URL-encoded PEM like nginx's `$ssl_client_escaped_cert`, or base64 DER).

    Must run before anything rewrites `scope["client"]` from X-Forwarded-For: the hop that sent
    the header is the connection's peer, and only a peer in `trusted` is believed. From anyone
    else the header is ignored, and so is a malformed one (the request has no certificate)."""

    def __init__(self, app: Asgi, *, header: str, trusted: tuple[IpNetwork, ...]) -> None:
        self.app = app
        self._header = header.lower().encode("latin-1")
        self._trusted = trusted
        self._parsed: OrderedDict[bytes, dict[str, Any] | None] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self._apply(scope)
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        name = self._header
        values = [value for key, value in scope["headers"] if key == name]
        if not values:
            return
        peer = scope.get("client")
        if not peer or not in_networks(parse_ip(peer[0]), self._trusted):
            return
        tls = None
        if len(values) == 1 and len(values[0]) <= MAX_HEADER_BYTES:
            tls = self._lookup(values[0])
        # From a trusted proxy the header is the only word on the client's certificate: a
        # repeated or malformed one leaves the request with none, never with the certificate
        # the proxy's own connection may carry (fail closed). A new dict: uvicorn may share one.
        extensions = {
            k: v for k, v in (scope.get("extensions") or {}).items() if k != TLS_EXTENSION
        }
        if tls is not None:
            extensions[TLS_EXTENSION] = tls
        scope["extensions"] = extensions

    def _lookup(self, value: bytes) -> dict[str, Any] | None:
        cache = self._parsed
        if value in cache:
            cache.move_to_end(value)
            return cache[value]
        try:
            cert = from_header(value.decode("latin-1"))
            cert.parsed  # noqa: B018 - a proxy's header is parsed once, here, or refused
            tls: dict[str, Any] | None = _extension(cert, FROM_PROXY_HEADER)
        except CertificateError:
            tls = None
        cache[value] = tls
        if len(cache) > PARSED_HEADERS:
            cache.popitem(last=False)
        return tls
