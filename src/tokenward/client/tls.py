"""A TLS client certificate the SDK presents (RFC 8705): to authenticate with `tls_client_auth`
or `self_signed_tls_client_auth`, and to use certificate-bound access tokens, which an API
accepts only over a connection made with the same certificate.

    cert = ClientCertificate("svc.pem", "svc.key", ca_file="ca.pem")
    source = ClientCredentials(issuer, "svc", certificate=cert)   # auth: tls_client_auth
    api = httpx.Client(verify=cert.ssl_context(), auth=TokenAuth(source))

The context is built once per ClientCertificate (loading a key costs milliseconds), so every
client made from it shares it; the TLS stack keeps the key in memory, never in a log or repr.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClientCertificate:
    """`certfile`: PEM certificate (and chain); `keyfile`: its PEM private key (default: in
    certfile); `password`: the key's, if encrypted; `ca_file`: the CAs to trust for the
    servers (default: the system's)."""

    certfile: str
    keyfile: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _context: list[ssl.SSLContext] = field(default_factory=list, repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context presenting this certificate (made once, then shared)."""
        with self._lock:
            if not self._context:
                context = ssl.create_default_context(cafile=self.ca_file)
                context.load_cert_chain(self.certfile, self.keyfile, password=self.password)
                self._context.append(context)
            return self._context[0]
