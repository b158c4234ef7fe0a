"""A loaded config turned into what the hot path reads: route table, balancers, header rules.

Built once per load or reload, then never changed; `Gateway.reload` swaps the whole value.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from starlette.types import Scope

from tokenward.core.proxies import client_address
from tokenward.gateway.headers import IdentityHeaders, Incoming, RequestHeaderPolicy
from tokenward.gateway.model import TOKEN_MODES, GatewayConfig
from tokenward.gateway.policy import Denied, RouteTable
from tokenward.gateway.proxy import balancer
from tokenward.gateway.ratelimit import policy_header, state_prefix
from tokenward.signedurl import KeySet, Verdict, Verifier

SignatureCheck = Callable[[str, str, str | None, float | None], Verdict]

Headers = list[tuple[bytes, bytes]]
# Sections that shape the process itself (sockets, trust, sinks): a reload cannot change them.
RESTART_ONLY = (
    "trust", "host", "port", "tls", "audit_path", "metrics_host", "metrics_port", "bff", "dpop",
    "revocations", "rate_limit_redis_url", "rate_limit_redis_prefix", "tracing", "limits", "geoip",
    "workers",
)  # fmt: skip


class Compiled:
    def __init__(
        self,
        config: GatewayConfig,
        session_cookies: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.routes = RouteTable(config.routes)
        self.balancers = {route.name: balancer(route) for route in config.routes}
        self.identity = IdentityHeaders(config.identity_headers)
        # The front proxy's client-certificate header is ours alone: never passed upstream,
        # where a service trusting the gateway as its proxy would believe it.
        cert_header = (config.tls.client_cert_header,) if config.tls.client_cert_header else ()
        # The identity headers an external authorization answer returns (gateway/authz.py).
        authz = config.authz
        claims = authz.identity if authz is not None else ()
        # (method, URI, host) header names of the proxy's description, as the scope spells them
        self.authz_headers = tuple(
            name.encode("latin-1") if name is not None else None
            for name in (
                (authz.method_header, authz.uri_header, authz.host_header)
                if authz is not None
                else (None, None, None)
            )
        )
        self.authz_identity = frozenset(
            config.identity_headers[claim].encode("latin-1") for claim in claims
        )
        self.headers = RequestHeaderPolicy(
            (*config.identity_headers.values(), *cert_header),
            (*config.auth_cookies, *session_cookies),
        )
        self.trusted = config.trusted_proxies
        self.require_tls = config.tls.require_tls
        self._hsts: Headers = (
            [(b"strict-transport-security", config.tls.hsts.encode("latin-1"))]
            if config.tls.hsts
            else []
        )
        # route name -> (RateLimit-Policy value, `"name";r=` prefix of RateLimit, key prefix)
        self.rate: dict[str, tuple[bytes, bytes, str]] = {
            route.name: (
                policy_header(route.rate_limit),
                state_prefix(route.rate_limit),
                f"{route.rate_limit.name}|",
            )
            for route in config.routes
            if route.rate_limit is not None
        }
        self._trusted_peers: dict[str | None, bool] = {}
        self._clients: dict[tuple[str | None, tuple[bytes, ...]], str] = {}
        # route name -> Verifier.verify_request, built once per load (keys pre-hashed).
        self.signatures: dict[str, SignatureCheck] = {}
        for route in config.routes:
            if route.signed_url is not None:
                settings = route.signed_url
                keys = KeySet.from_secrets(dict(settings.keys), settings.keys[0][0])
                self.signatures[route.name] = Verifier(
                    keys,
                    clock=clock,
                    leeway=settings.leeway,
                    allow_unsigned_query=settings.allow_unsigned_query,
                ).verify_request

    def hsts(self, scheme: str) -> Headers:
        # RFC 6797 §7.2: HSTS only over secure transport; a plain-HTTP answer must not carry it.
        return self._hsts if scheme == "https" else []

    def scheme(self, scope: Scope, incoming: Incoming, peer: str | None) -> str:
        """The client's scheme: ours, or what a trusted TLS-terminating proxy says it was."""
        proto = incoming.forwarded_proto
        if proto is not None and self.peer_trusted(peer):
            return "https" if proto.strip().lower() == b"https" else "http"
        scheme: str = scope.get("scheme", "http")
        return scheme

    def htu(self, scope: Scope, incoming: Incoming, scheme: str) -> str:
        """This request's URL as the client addressed it, for DPoP's `htu` (RFC 9449 §4.3):
        `public_url` + path when configured, else the client's scheme and Host + path. The path
        is the resolved one, as forwarded (gateway/paths.py): a proof names what is served."""
        raw: bytes = scope["raw_path"]
        path = raw.decode("ascii")
        base = self.config.public_url
        if base is None:
            host = incoming.host
            if not host:
                raise Denied(400, "malformed", "a Host header is required")
            base = f"{scheme}://{host.decode('latin-1')}"
        return base + path

    def client_ip(self, peer: str | None, forwarded: list[bytes]) -> str:
        """The client's address (core.proxies.client_address), remembered: behind a proxy the
        same few chains come again and again, and parsing them costs more than the rest of
        admission. Bounded: past 4096 chains the memo starts over."""
        if not forwarded:
            return client_address(peer, forwarded, self.trusted)
        key = (peer, tuple(forwarded))
        known = self._clients.get(key)
        if known is None:
            if len(self._clients) >= 4096:
                self._clients.clear()
            known = self._clients[key] = client_address(peer, forwarded, self.trusted)
        return known

    def peer_trusted(self, peer: str | None) -> bool:
        if peer is None or not self.trusted:
            return False
        known = self._trusted_peers.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                return False
            known = any(address.version == net.version and address in net for net in self.trusted)
            if len(self._trusted_peers) < 4096:  # peers are few; bound it all the same
                self._trusted_peers[peer] = known
        return known


def check_reloadable(old: GatewayConfig, new: GatewayConfig, *, has_validator: bool) -> None:
    changed = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    if changed:
        raise ValueError(f"{', '.join(changed)} changed: these need a restart, not a reload")
    if not has_validator and any(route.auth in TOKEN_MODES for route in new.routes):
        raise ValueError("routes with auth: bearer need a validator: restart with trust set")
