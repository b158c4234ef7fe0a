"""Authorization server metadata from the issuer URL (OIDC Discovery 1.0 §4, RFC 8414 §3).

The document must name exactly the issuer we asked about (RFC 8414 §3.3): otherwise anyone able
to serve a metadata document could point our token requests, with our secrets, elsewhere.
Endpoints must be https, or http on this machine (development servers, tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokenward.client._flow import Flow, send
from tokenward.client.errors import DiscoveryError

DEFAULT_TTL = 3600.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def check_endpoint_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(url)):
        return url
    raise DiscoveryError("endpoints must be https (plain http only on this machine)")


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    iss_parameter_supported: bool = False  # RFC 9207 §3
    dpop_algs: tuple[str, ...] = ()
    # RFC 8705 §5: where a client presenting a certificate sends its token requests.
    mtls_token_endpoint: str | None = None
    jwks_uri: str | None = None  # the keys that sign its ID tokens (OIDC Discovery §3)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_document(cls, document: object, issuer: str) -> ServerMetadata:
        if not isinstance(document, dict):
            raise DiscoveryError("the metadata document is not a JSON object")
        if document.get("issuer") != issuer:  # RFC 8414 §3.3: exact string comparison
            raise DiscoveryError("the metadata names another issuer than the one asked for")
        token_endpoint = document.get("token_endpoint")
        if not isinstance(token_endpoint, str):
            raise DiscoveryError("the metadata has no token_endpoint")
        algs = document.get("dpop_signing_alg_values_supported")
        aliases = document.get("mtls_endpoint_aliases")
        return cls(
            mtls_token_endpoint=(
                _endpoint(aliases, "token_endpoint") if isinstance(aliases, dict) else None
            ),
            issuer=issuer,
            token_endpoint=check_endpoint_url(token_endpoint),
            authorization_endpoint=_endpoint(document, "authorization_endpoint"),
            device_authorization_endpoint=_endpoint(document, "device_authorization_endpoint"),
            revocation_endpoint=_endpoint(document, "revocation_endpoint"),
            jwks_uri=_endpoint(document, "jwks_uri"),
            iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
            is True,
            dpop_algs=tuple(a for a in algs if isinstance(a, str))
            if isinstance(algs, list)
            else (),
            raw=document,
        )


def _endpoint(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    return check_endpoint_url(value) if isinstance(value, str) else None


def metadata_urls(issuer: str) -> list[str]:
    """OIDC appends to the issuer; RFC 8414 §3.1 inserts the well-known part before its path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        f"{origin}/.well-known/oauth-authorization-server{path}",
    ]


class Discovery:
    """Fetches an issuer's metadata once and keeps it for `ttl` seconds."""

    def __init__(
        self,
        issuer: str,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        metadata: ServerMetadata | None = None,
    ) -> None:
        check_endpoint_url(issuer)
        self.issuer = issuer
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, ServerMetadata] | None = None
        if metadata is not None:  # given, not fetched: kept for good
            self._cached = (float("inf"), metadata)

    def __repr__(self) -> str:
        return f"Discovery(issuer={self.issuer!r})"

    def cached(self) -> ServerMetadata | None:
        with self._lock:
            if self._cached is not None and self._clock() < self._cached[0]:
                return self._cached[1]
        return None

    def flow(self) -> Flow[ServerMetadata]:
        found = self.cached()
        if found is not None:
            return found
        for url in metadata_urls(self.issuer):
            request = httpx.Request("GET", url, headers={"accept": "application/json"})
            response = yield from send(request)
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                raise DiscoveryError(f"the metadata request failed (HTTP {response.status_code})")
            try:
                document = response.json()
            except ValueError:
                raise DiscoveryError("the metadata document is not JSON") from None
            metadata = ServerMetadata.from_document(document, self.issuer)
            with self._lock:
                self._cached = (self._clock() + self._ttl, metadata)
            return metadata
        raise DiscoveryError("the issuer publishes no metadata document")
