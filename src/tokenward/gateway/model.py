"""The gateway's config as frozen values: what `config.py` builds from YAML and the app runs on."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tokenward.core.ratelimits import RatePolicy
from tokenward.guard.authz.source import PolicyFile, PolicySet
from tokenward.guard.authz.templates import PathTemplates
from tokenward.serving.limits import HeadLimits
from tokenward.tokens.dpop import PROOF_ALGS

if TYPE_CHECKING:
    from tokenward.gateway.schema import RouteSchema
    from tokenward.gateway.traffic_model import TrafficPolicy
    from tokenward.gateway.upstream_tls import UpstreamTls
    from tokenward.gateway.websocket_config import WebSocketSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AUTH_MODES = ("bearer", "bff", "none", "dpop", "signed_url")
TOKEN_MODES = frozenset({"bearer", "bff", "dpop"})  # modes that validate an access token
# Modes the config grammar knows but this build cannot enforce yet: refused at load, so a
# route never runs with weaker checks than its author asked for.
NOT_YET: dict[str, str] = {}
RATE_KEYS = ("token", "subject", "client", "ip")
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
DEFAULT_RATE = "default"
IDENTITY_DEFAULTS = {
    "subject": "x-auth-subject",
    "client_id": "x-auth-client-id",
    "scope": "x-auth-scope",
    "jti": "x-auth-jti",
}


@dataclass(frozen=True)
class IpRules:
    allow: tuple[IpNetwork, ...] = ()
    deny: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    base_path: str  # no trailing slash; "" for the root
    tls: UpstreamTls | None = None  # https:// only (gateway/upstream_tls.py)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @functools.cached_property
    def host_field(self) -> tuple[bytes, bytes]:
        """The Host field of every request to this upstream, made once (the hot path)."""
        return (b"host", self.host_header.encode("ascii"))


AUTHZ_MODES = ("nginx", "envoy", "traefik")
# Where each proxy puts the original request's method, URI and host (None: the authorization
# request's own method, path after `authz.path`, or Host carry it, as Envoy sends them).
AUTHZ_DEFAULTS: dict[str, tuple[str | None, str | None, str | None]] = {
    "nginx": ("x-original-method", "x-original-uri", "x-original-host"),
    "envoy": (None, None, None),
    "traefik": ("x-forwarded-method", "x-forwarded-uri", "x-forwarded-host"),
}


@dataclass(frozen=True)
class AuthzSettings:
    """`authz:` the gateway's decision served to a native proxy (docs/edge.md)."""

    mode: str = "nginx"  # nginx (auth_request) | envoy (ext_authz HTTP) | traefik (forwardAuth)
    path: str = "/_authz"  # requests under it are authorization checks, never proxied
    method_header: str | None = "x-original-method"
    uri_header: str | None = "x-original-uri"
    host_header: str | None = "x-original-host"
    identity: tuple[str, ...] = tuple(IDENTITY_DEFAULTS)  # claims returned as identity headers
    cache_seconds: int = 0  # > 0: allowed bearer decisions say max-age (capped by token exp)


@dataclass(frozen=True)
class SignedUrlSettings:
    """`auth: signed_url` routes: the HMAC keys links are checked with (docs/signed-urls.md)."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)  # (kid, secret); the first signs
    leeway: int = 0  # seconds of clock skew allowed between signer and gateway
    allow_unsigned_query: bool = False  # prefix links only: extra query parameters pass


@dataclass(frozen=True)
class PolicySettings:
    """`policies:` at the top: Cedar files for every token route, and the context's sources."""

    files: tuple[PolicyFile, ...] = ()
    timezone: str = "UTC"  # for context.hour and context.weekday
    geoip: str | None = None  # a MaxMind DB for context.country (restart to change)


@dataclass(frozen=True, eq=False)
class RoutePolicies:
    """A route's Cedar policies (the global ones first), validated at load."""

    policies: PolicySet
    templates: PathTemplates
    files: tuple[str, ...]  # watched for changes by the reloader
    actions: dict[str, str] = field(default_factory=dict)  # method -> the route's action name


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    methods: frozenset[str] | None  # None: every method
    upstreams: tuple[Upstream, ...]
    auth: str
    scopes: frozenset[str] = frozenset()
    scope_match: str = "all"
    audience: str | None = None
    rate_limit: RatePolicy | None = None
    ip: IpRules = IpRules()
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    strip_prefix: bool = False
    idempotency_ttl: float | None = None
    signed_url: SignedUrlSettings | None = None
    policies: RoutePolicies | None = None
    schema: RouteSchema | None = None  # `openapi:` the route's request schemas
    traffic: TrafficPolicy | None = None  # `traffic:` canary, health, retries (traffic.py)
    websocket: WebSocketSettings | None = None  # `websocket:` upgrades allowed (None: refused)
    line: int = 0
    # One per upstream (`{url:, weight:}` entries); None when all weigh 1: plain round robin.
    weights: tuple[int, ...] | None = None

    def matches(self, path: str) -> bool:
        prefix = self.prefix
        # `/api` matches `/api` and `/api/...`, never `/apix`.
        return path.startswith(prefix) and (
            len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"
        )


@dataclass(frozen=True)
class Trust:
    issuer: str | None = None
    mode: str = "remote"  # remote | local
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks_file: str | None = None  # a fixed key set, e.g. for an air-gapped gateway
    introspection_endpoint: str | None = None
    introspection_client_id: str | None = None
    introspection_secret_env: str | None = None
    introspection_secret_file: str | None = None
    introspection_negative_ttl: float = 5.0
    introspection_max_ttl: float = 300.0


@dataclass(frozen=True)
class Tls:
    cert: str | None = None
    key: str | None = None
    hsts: str | None = None  # the Strict-Transport-Security value, e.g. "max-age=31536000"
    require_tls: bool = False
    # mTLS (RFC 8705, docs/mtls.md): client certificates on this listener (none | optional |
    # required, chaining to client_ca), or from a trusted front proxy's header.
    client_certs: str = "none"
    client_ca: str | None = None
    client_cert_header: str | None = None


@dataclass(frozen=True)
class BffSettings:
    """Browser mode: the gateway signs the user in and keeps their tokens server-side."""

    client_id: str
    redirect_uri: str  # the gateway's own callback URL, as registered for the client
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    scopes: tuple[str, ...] = ("openid",)
    allowed_origins: tuple[str, ...] = ()
    secure_cookies: bool = True  # false only for plain-HTTP development on loopback
    session_ttl: float = 8 * 3600.0  # the absolute lifetime of a session
    idle_timeout: float | None = None  # ends a session unused this long (None: only the TTL)
    login_path: str = "/bff/login"
    callback_path: str = "/bff/callback"
    logout_path: str = "/bff/logout"


@dataclass(frozen=True)
class DpopSettings:
    """`auth: dpop` routes (RFC 9449 §7): proof algorithms and optional server nonces (§9)."""

    algorithms: tuple[str, ...] = PROOF_ALGS
    nonce_secret_env: str | None = None  # set one of these to require server nonces
    nonce_secret_file: str | None = None

    @property
    def nonces(self) -> bool:
        return self.nonce_secret_env is not None or self.nonce_secret_file is not None


@dataclass(frozen=True)
class RevocationSettings:
    """Revocations pushed from the authorization servers (docs/gateway.md, Revocation feed)."""

    database_url: str = field(repr=False)  # the issuer's database (may hold a password)
    database_schema: str | None = None
    redis_url: str | None = field(default=None, repr=False)
    namespace: str | None = None  # None: derived from trust.issuer and database_schema
    resync_seconds: float = 2.0
    max_staleness: float = 30.0
    fail_open: bool = False


@dataclass(frozen=True)
class MonitorRelaySettings:
    """Usage events shipped to the authorization servers' monitors (docs/monitoring.md)."""

    redis_url: str | None = field(default=None, repr=False)  # None: the revocations' Redis
    # The servers' `redis_namespace` (their log line `redis_namespace=` at start). None: the
    # revocations' namespace, or the one derived from trust.issuer and no database schema.
    namespace: str | None = None
    stream: str | None = None  # None: `<namespace>:usage`, where the servers read
    buffer: int = 10_000  # events queued between shipments; beyond it they are dropped
    interval: float = 0.2  # seconds between shipments
    blocklist: bool = True  # refuse addresses the deployment's monitor or an admin blocked
    risk: bool = False  # score requests here too, for `context.risk` (docs/monitoring.md)


@dataclass(frozen=True)
class GatewayConfig:
    routes: tuple[Route, ...]
    trust: Trust = Trust()
    host: str = "127.0.0.1"
    port: int = 8080
    tls: Tls = Tls()
    identity_headers: dict[str, str] = field(default_factory=lambda: dict(IDENTITY_DEFAULTS))
    auth_cookies: tuple[str, ...] = ()
    trusted_proxies: tuple[IpNetwork, ...] = ()
    audit_path: str | None = "-"  # "-" is stdout; None turns audit off
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    bff: BffSettings | None = None
    # How clients reach this gateway (scheme://host[:port][/base]): the `htu` DPoP proofs are
    # checked against. None: the request's scheme and Host.
    public_url: str | None = None
    dpop: DpopSettings = DpopSettings()
    revocations: RevocationSettings | None = None
    monitor: MonitorRelaySettings | None = None
    # rate_limits.redis_url / redis_prefix: the shared backend (store.redis_ratelimit)
    rate_limit_redis_url: str | None = field(default=None, repr=False)
    rate_limit_redis_prefix: str | None = None
    tracing: bool = False  # OpenTelemetry spans (the `otel` extra); OTEL_* variables configure
    limits: HeadLimits = field(default_factory=HeadLimits)  # heads, bodies, connections
    policies: PolicySettings = PolicySettings()
    authz: AuthzSettings | None = None
    workers: int = 1  # processes serving the port (SO_REUSEPORT); > 1 shares state in Redis
    source: str = "<config>"

    @property
    def geoip(self) -> str | None:
        return self.policies.geoip

    @property
    def policy_files(self) -> tuple[str, ...]:
        """Every policy file the routes use: a change to one reloads like the config's own."""
        names = {name for route in self.routes if route.policies for name in route.policies.files}
        return tuple(sorted(names))
