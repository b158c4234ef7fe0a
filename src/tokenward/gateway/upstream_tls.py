"""TLS to upstreams: `https://` upstream URLs, a route's `upstream_tls:` (CA bundle, client
certificate for mTLS, server name), each built into one `ssl.SSLContext` at config load.

Verification is always on: there is no setting that turns it off. A file that is missing,
unreadable or not what it should be refuses the config at load, naming the setting, rather
than failing each request later. One `UpstreamTls` value is made per distinct setting within
a load and compared by identity: the connection pool keys idle connections by it, so a
connection is never reused under different TLS settings (nor across a reload that re-read
the files).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from tokenward.gateway.yamlnodes import Node

if TYPE_CHECKING:
    from tokenward.gateway.model import Upstream

CLOSED_AFTER_HANDSHAKE = (
    "the upstream closed the new TLS connection without answering: it may require a client "
    "certificate (upstream_tls.cert and key) or not accept the one presented"
)
FIELDS = frozenset({"ca", "cert", "key", "server_name"})


class UpstreamTls:
    """The TLS settings of a connection to an upstream: the context and the SNI name."""

    __slots__ = ("ca", "cert", "context", "server_name")

    def __init__(
        self,
        context: ssl.SSLContext,
        server_name: str | None = None,
        ca: str | None = None,
        cert: str | None = None,
    ) -> None:
        self.context = context
        self.server_name = server_name  # None: the upstream URL's host
        self.ca = ca  # for repr and docs only; the context holds what was read
        self.cert = cert

    def __repr__(self) -> str:
        return f"UpstreamTls(ca={self.ca!r}, cert={self.cert!r}, server_name={self.server_name!r})"


class TlsContexts:
    """The contexts one config load builds: one per distinct setting, the system trust once."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._made: dict[tuple[str | None, str | None, str | None, str | None], UpstreamTls] = {}

    def settings(self, node: Node | None) -> UpstreamTls:
        """A route's `upstream_tls:` (None: system trust, the URL's host as server name)."""
        fields = node.mapping(FIELDS) if node is not None else {}
        ca = self._path(fields.get("ca"))
        cert = self._path(fields.get("cert"))
        key = self._path(fields.get("key"))
        if (cert is None) != (key is None) and node is not None:
            raise node.error("cert: and key: go together (the client certificate for mTLS)")
        server_name = fields["server_name"].string() if "server_name" in fields else None
        if server_name is not None and not _is_host_name(server_name):
            raise fields["server_name"].error("must be a DNS host name")
        wanted = (ca, cert, key, server_name)
        made = self._made.get(wanted)
        if made is None:
            context = _context(fields, ca, cert, key)
            made = self._made[wanted] = UpstreamTls(context, server_name, ca, cert)
        return made

    def _path(self, node: Node | None) -> str | None:
        if node is None:
            return None
        return str(self._base / node.string())


def _context(
    fields: dict[str, Node], ca: str | None, cert: str | None, key: str | None
) -> ssl.SSLContext:
    # create_default_context: CERT_REQUIRED, host names checked, TLS 1.2 at least.
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError):
        raise fields["ca"].error(_unusable(ca, "a PEM bundle of CA certificates")) from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except (OSError, ssl.SSLError, ValueError):
            raise fields["cert"].error(
                _unusable(cert, "a PEM certificate whose unencrypted key is in key:")
                if Path(key).is_file()
                else f"cannot read the key file {key}"
            ) from None
    return context


def _unusable(path: str | None, expected: str) -> str:
    if path is not None and not Path(path).is_file():
        return f"cannot read {path}"
    return f"{path} is not {expected}"


def _no_password() -> bytes:
    # An encrypted key would otherwise make OpenSSL prompt on the terminal.
    return b""


def _is_host_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )


async def open_stream(
    upstream: Upstream, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the upstream, TLS-wrapped for https:// (the handshake is bounded by
    the caller's connect timeout)."""
    tls = upstream.tls
    if tls is None:
        return await asyncio.open_connection(upstream.host, upstream.port, limit=limit)
    return await asyncio.open_connection(
        upstream.host,
        upstream.port,
        limit=limit,
        ssl=tls.context,
        server_hostname=tls.server_name or upstream.host,
    )


def tls_failure(exc: ssl.SSLError) -> str:
    """Why a TLS handshake failed, for the 502's description and the logs (no secrets in it:
    OpenSSL's reason, e.g. a certificate's verify error or the peer's alert)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the upstream's certificate did not verify: {exc.verify_message}"
    reason = (exc.reason or type(exc).__name__).lower().replace("_", " ")
    return f"TLS with the upstream failed: {reason}"
