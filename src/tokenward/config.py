"""Settings, read once by the composition root (deploy/). Nothing else reads the environment.

Every field can be set as TOKENWARD_<NAME> (e.g. TOKENWARD_ISSUER) or in `<data_dir>/tokenward.env`
(docs/configuration.md lists them all). `load_settings` applies the precedence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenward.core.proxies import IpNetwork, parse_networks
from tokenward.serving.limits import HeadLimits
from tokenward.serving.tls import TlsSettings
from tokenward.tokens.algorithms import ALGORITHMS, GENERATED
from tokenward.tokens.errors import MasterKeyError

ENV_FILE = "tokenward.env"  # in the data directory; the environment overrides it
FAPI2_SIGNING_ALGS = frozenset({"PS256", "ES256", "EdDSA"})  # as oauth/profiles.py FAPI2_ALGS
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
REGISTRATION_MODES = ("off", "initial_token", "open")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class TrustedIssuerSetting(BaseModel):
    """An issuer whose JWTs a token exchange accepts as subject or actor tokens (RFC 8693):
    its keys come from `jwks_uri`, and only in `algorithm`."""

    issuer: str
    jwks_uri: str
    algorithm: str

    @field_validator("jwks_uri")
    @classmethod
    def _https(cls, value: str) -> str:
        loopback = value.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
        if not value.startswith("https://") and not loopback:
            raise ValueError("jwks_uri must be an https URL (http only on loopback)")
        return value

    @field_validator("algorithm")
    @classmethod
    def _asymmetric(cls, value: str) -> str:
        if value not in ALGORITHMS or ALGORITHMS[value].symmetric:
            raise ValueError("algorithm must be an asymmetric JWS algorithm we verify")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENWARD_", extra="ignore")

    data_dir: Path = Path("var")
    issuer: str = "http://127.0.0.1:8000"
    database_url: str | None = None  # default: sqlite file under data_dir
    database_schema: str | None = None  # PostgreSQL search_path (several deployments, one db)
    # PostgreSQL connections each process keeps open (store/sql/engine.py).
    database_pool_size: int = Field(default=10, ge=1, le=200)
    redis_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None  # default: <data_dir>/master.key when it exists

    signing_alg: str = "ES256"
    # Algorithms kept active besides (comma-separated, e.g. "ML-DSA-65,ES256"): each has its
    # own keyring and active key, for the audiences and clients that ask for it.
    signing_algs: str = ""
    # Per audience (resource) access-token algorithm, as JSON: {"https://pqc.example/api":
    # "ML-DSA-65"}. Other audiences get signing_alg (docs/post-quantum.md).
    audience_signing_algs: dict[str, str] = {}
    key_schedule_seconds: float = Field(default=60.0, ge=0.5, le=3600.0)
    # How long a new key is published before it signs (rotation, `keys migrate`). Default: an
    # hour, or twice jwks_max_age if longer; never less than twice jwks_max_age, so every
    # cache that honours max-age has seen it.
    key_publish_ahead: float | None = None
    key_rotation_days: float = 30.0
    jwks_max_age: int = 300
    access_token_lifetime: int = 900
    refresh_token_lifetime: int = 30 * 86400
    refresh_reuse_grace: float = 10.0
    leeway: float = 30.0
    default_audience: str | None = None  # default: issuer + "/api"
    token_cache_entries: int = 10_000
    dpop_nonces: bool = True  # RFC 9449 §8 server nonces at the token endpoint
    # PAR (RFC 9126) and JAR (RFC 9101), server-wide; clients can be held to them one by one too.
    require_pushed_authorization_requests: bool = False
    require_signed_request_object: bool = False
    par_lifetime: int = Field(default=60, ge=10, le=599)  # seconds a request_uri stays usable
    # The security profile every client is held to at least (oauth/profiles.py, docs/fapi2.md);
    # a client's own profile may be stricter, never weaker.
    profile: Literal["baseline", "fapi2"] = "baseline"
    revocation_resync_seconds: float = 2.0  # re-read the revocation log this often
    revocation_max_staleness: float = 30.0  # past this without a sync, validators answer 503
    revocation_fail_open: bool = False  # True: keep serving on a stale mirror (and log it)
    revocation_feed: bool = True  # publish GET /revocations (digests) to remote resource servers
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # `tokenward serve` processes sharing the port (SO_REUSEPORT), under one supervisor
    # (docs/deployment.md "Workers"); `--workers` overrides it.
    workers: int = Field(default=1, ge=1, le=64)
    # Prometheus /metrics: off; "on" (main listener, loopback peers without proxy headers); or
    # HOST:PORT for a listener of its own (docs/operations.md). Off unless asked: never public.
    metrics: str = "off"
    otel_enabled: bool = False  # OpenTelemetry tracing; needs the `otel` extra (OTEL_* env vars)
    # Request heads, bodies and connections: defaults, bounds and why in tokenward.serving.limits.
    max_header_bytes: int = HeadLimits.max_header_bytes
    max_url_bytes: int = HeadLimits.max_url_bytes
    max_header_fields: int = HeadLimits.max_header_fields
    header_timeout: float = HeadLimits.header_timeout
    max_connections: int | None = None  # None: 1024, or fewer if the fd limit is lower
    body_timeout: float = HeadLimits.body_timeout  # idle seconds while a request body is due
    # Comma-separated CIDRs of the reverse proxies (load balancers) in front of this server:
    # their X-Forwarded-For is believed, hop by hop. Empty: the peer is the client.
    trusted_proxies: str = ""
    # Strict-Transport-Security on every response when the issuer is https (never over http).
    hsts_max_age: int = Field(default=2 * 365 * 86400, ge=0)
    hsts_include_subdomains: bool = True
    # Token exchange (RFC 8693): issuers whose JWTs may be exchanged, as a JSON list of
    # {"issuer", "jwks_uri", "algorithm"} (docs/token-exchange.md).
    exchange_trusted_issuers: list[TrustedIssuerSetting] = []
    # mTLS (RFC 8705, docs/mtls.md). Terminate TLS here (`serve --ssl-*` flags override these);
    # with ssl_cert_reqs optional/required, client certificates must chain to ssl_ca_certs.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str = "none"
    # Or behind a TLS-terminating proxy: the header it forwards the client certificate in
    # (PEM, URL-encoded PEM or base64 DER), believed only from trusted_proxies. Empty: none.
    mtls_certificate_header: str = ""
    # Where clients reach the endpoints with a certificate (RFC 8705 §5
    # mtls_endpoint_aliases), when not the issuer itself. Empty: the issuer, once mTLS is on.
    mtls_base_url: str = ""
    # Shared Signals receiver (docs/continuous-access.md): transmitters whose SETs POSTed to
    # /ssf/receive are verified and acted on, as a JSON list of {"issuer", "jwks_uri",
    # "algorithm"}; and how old (by iat, seconds) a SET may be.
    ssf_transmitters: list[TrustedIssuerSetting] = []
    ssf_max_age: float = Field(default=3600.0, ge=60.0, le=7 * 86400.0)
    # Requests to URLs someone else chose (SSF push streams, back-channel logout, clients'
    # jwks_uri) go to https URLs on public addresses only (oauth/outbound.py). On: plain http
    # and loopback addresses are allowed too, for development and tests; never in production.
    outbound_allow_loopback: bool = False

    # Dynamic client registration (RFC 7591/7592, docs/registration.md): off; initial_token
    # (POST /register needs an initial access token, `tokenward client registration-token
    # create`); or open (anyone may register: only behind other controls).
    registration: str = "off"
    # The scopes a dynamically registered client may hold (space-separated); it asks for a
    # subset, or gets them all.
    registration_scopes: str = "openid profile email offline_access"
    # Registrations per client address: N/s, N/m, N/h or N/d.
    registration_rate: str = "20/h"
    # At most this many clients registered openly (registration=open) at once, counted in the
    # database for the whole deployment: the per-address rate alone does not bound the total.
    registration_max_open_clients: int = Field(default=10_000, ge=1, le=10_000_000)
    # Software statement issuers (RFC 7591 §2.3), as a JSON list of {"issuer", "jwks_uri",
    # "algorithm"}; and whether every registration must carry a statement of one of them.
    registration_statement_issuers: list[TrustedIssuerSetting] = []
    registration_require_statement: bool = False

    # The developer portal at /portal (docs/portal.md): the gateway configuration files
    # (comma-separated paths) whose routes and OpenAPI documents make its catalogue; empty:
    # the portal is off. And how many apps one developer may register there.
    portal_gateway_configs: str = ""
    portal_max_apps: int = Field(default=5, ge=1, le=100)

    @property
    def portal_config_paths(self) -> tuple[Path, ...]:
        return tuple(Path(p.strip()) for p in self.portal_gateway_configs.split(",") if p.strip())

    @field_validator("issuer")
    @classmethod
    def _issuer_is_an_https_url_without_query(cls, value: str) -> str:
        # RFC 8414 §2: https, no query or fragment. Plain http only on loopback for development.
        if "?" in value or "#" in value:
            raise ValueError("the issuer must have no query or fragment")
        loopback = value.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
        if not value.startswith("https://") and not loopback:
            raise ValueError("the issuer must be an https URL (http only on loopback)")
        return value

    @field_validator("registration")
    @classmethod
    def _registration_mode(cls, value: str) -> str:
        if value not in REGISTRATION_MODES:
            raise ValueError(f"registration must be one of {', '.join(REGISTRATION_MODES)}")
        return value

    @field_validator("registration_rate")
    @classmethod
    def _registration_rate(cls, value: str) -> str:
        rate_limit(value)  # raises ValueError unless N/s, N/m, N/h or N/d
        return value

    @model_validator(mode="after")
    def _statements_need_issuers(self) -> Settings:
        if self.registration_require_statement and not self.registration_statement_issuers:
            raise ValueError("registration_require_statement needs registration_statement_issuers")
        return self

    @field_validator("metrics")
    @classmethod
    def _metrics_exposure(cls, value: str) -> str:
        metrics_listener(value)  # raises ValueError when neither off, on nor HOST:PORT
        return value

    @field_validator("signing_alg")
    @classmethod
    def _known_alg(cls, value: str) -> str:
        if value not in GENERATED:
            raise ValueError(f"signing_alg must be one of {', '.join(GENERATED)}")
        return value

    @field_validator("signing_algs")
    @classmethod
    def _known_algs(cls, value: str) -> str:
        for name in _names(value):
            if name not in GENERATED or ALGORITHMS[name].symmetric:
                raise ValueError(f"signing_algs: {name!r} is not an asymmetric algorithm we sign")
        return value

    @field_validator("audience_signing_algs")
    @classmethod
    def _known_audience_algs(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64:
            raise ValueError("audience_signing_algs holds at most 64 audiences")
        for audience, name in value.items():
            if not audience or name not in GENERATED or ALGORITHMS[name].symmetric:
                raise ValueError(
                    f"audience_signing_algs: {audience!r} needs an asymmetric algorithm we sign"
                )
        return value

    @property
    def kept_signing_algs(self) -> list[str]:
        """TOKENWARD_SIGNING_ALGS as a list: algorithms whose keys stay active whatever
        `tokenward keys migrate` chose."""
        return _names(self.signing_algs)

    @model_validator(mode="after")
    def _profile_algorithm(self) -> Settings:
        # FAPI 2.0 §5.4: what the server signs with is PS256, ES256 or EdDSA too.
        if self.profile != "fapi2":
            return self
        if self.signing_alg not in FAPI2_SIGNING_ALGS:
            raise ValueError("profile fapi2 needs signing_alg PS256, ES256 or EdDSA")
        for audience, alg in self.audience_signing_algs.items():
            if alg not in FAPI2_SIGNING_ALGS:
                raise ValueError(
                    f"audience_signing_algs: {audience[:80]!r} is signed with {alg}, which the "
                    f"fapi2 profile does not allow: {alg} is not in FAPI 2.0's PS256/ES256/EdDSA "
                    "list (§5.4)"
                    + (
                        "; post-quantum ML-DSA (RFC 9964) is not among them yet"
                        if alg.startswith("ML-DSA-")
                        else ""
                    )
                )
        return self

    @model_validator(mode="after")
    def _publish_ahead_outlasts_caches(self) -> Settings:
        if self.key_publish_ahead is not None and self.key_publish_ahead < 2 * self.jwks_max_age:
            raise ValueError("key_publish_ahead must be at least twice jwks_max_age")
        return self

    @property
    def publish_ahead(self) -> float:
        if self.key_publish_ahead is not None:
            return self.key_publish_ahead
        return max(3600.0, self.jwks_max_age * 2.0)

    @model_validator(mode="after")
    def _head_limits_in_bounds(self) -> Settings:
        self.head_limits()  # LimitError (a ValueError) names the setting out of bounds
        return self

    def head_limits(self) -> HeadLimits:
        return HeadLimits(
            max_header_bytes=self.max_header_bytes,
            max_url_bytes=self.max_url_bytes,
            max_header_fields=self.max_header_fields,
            header_timeout=self.header_timeout,
            max_connections=self.max_connections,
            body_timeout=self.body_timeout,
        )

    @property
    def metrics_listener(self) -> tuple[str, int] | None:
        """(host, port) of the separate metrics listener, or None."""
        return metrics_listener(self.metrics)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        split_networks(value)  # a typo must stop the server, not trust nobody (or everybody)
        return value

    @model_validator(mode="after")
    def _tls_settings(self) -> Settings:
        self.tls_settings()  # ValueError for client certificates asked without CAs
        if self.mtls_certificate_header and not self.trusted_proxies:
            raise ValueError("mtls_certificate_header needs trusted_proxies (who may send it)")
        return self

    def tls_settings(self) -> TlsSettings | None:
        if self.ssl_certfile is None:
            if self.ssl_cert_reqs != "none" or self.ssl_keyfile or self.ssl_ca_certs:
                raise ValueError("ssl_keyfile, ssl_ca_certs and ssl_cert_reqs need ssl_certfile")
            return None
        return TlsSettings(
            self.ssl_certfile, self.ssl_keyfile, self.ssl_ca_certs, self.ssl_cert_reqs
        )

    @property
    def mtls_enabled(self) -> bool:
        """Client certificates can reach us: on our own TLS listener or from a proxy."""
        return bool(self.mtls_certificate_header) or self.ssl_cert_reqs != "none"

    @property
    def trusted_networks(self) -> tuple[IpNetwork, ...]:
        return split_networks(self.trusted_proxies)

    @property
    def redis_namespace(self) -> str:
        """Keys and channels of one deployment, so deployments sharing a Redis never mix."""
        digest = hashlib.sha256(f"{self.issuer}|{self.database_schema}".encode()).hexdigest()
        return f"tokenward:{digest[:16]}"

    @property
    def hsts_header(self) -> str | None:
        if not self.issuer.startswith("https://"):
            return None
        subdomains = "; includeSubDomains" if self.hsts_include_subdomains else ""
        return f"max-age={self.hsts_max_age}{subdomains}"

    @property
    def audience(self) -> str:
        return self.default_audience or self.issuer.rstrip("/") + "/api"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'tokenward.db'}"

    def resolved_master_key(self) -> str:
        """The master key from the setting or its file; a clear error when neither is there."""
        if self.master_key is not None:
            return self.master_key.get_secret_value()
        path = self.master_key_file or self.data_dir / "master.key"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise MasterKeyError(
                f"no master key: set TOKENWARD_MASTER_KEY or create {path} "
                "(`tokenward init` does both for a new deployment)"
            ) from None


class _DataDir(BaseSettings):
    """The data directory alone, read first: it says where tokenward.env is."""

    model_config = SettingsConfigDict(env_prefix="TOKENWARD_", extra="ignore")

    data_dir: Path = Path("var")


def load_settings(*, default_issuer: str | None = None, **flags: Any) -> Settings:
    """Settings by precedence: flag (a non-None keyword) > TOKENWARD_* environment >
    `<data_dir>/tokenward.env` > `default_issuer` (issuer only) > the field's default."""
    given = {name: value for name, value in flags.items() if value is not None}
    data_dir = Path(given.pop("data_dir", None) or _DataDir().data_dir)
    # data_dir is passed on, so a TOKENWARD_DATA_DIR inside tokenward.env cannot move the file.
    settings = Settings(_env_file=data_dir / ENV_FILE, data_dir=data_dir, **given)
    if default_issuer is not None and "issuer" not in settings.model_fields_set:
        given["issuer"] = default_issuer
        settings = Settings(_env_file=data_dir / ENV_FILE, data_dir=data_dir, **given)
    return settings


def loopback_issuer(host: str, port: int, *, https: bool = False) -> str | None:
    """The development issuer for a loopback bind; None for any other address, which needs
    TOKENWARD_ISSUER (the https URL clients reach, usually a load balancer's)."""
    if host not in LOOPBACK_HOSTS:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


def metrics_listener(value: str) -> tuple[str, int] | None:
    """None for "off" and "on"; (host, port) for HOST:PORT ([::1]:9464 for IPv6)."""
    if value in ("off", "on"):
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("metrics must be off, on, or HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)


def split_networks(text: str) -> tuple[IpNetwork, ...]:
    return parse_networks(item for item in text.split(",") if item.strip())


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def rate_limit(value: str) -> tuple[int, float]:
    """`N/unit` (s, m, h, d) as (requests, seconds): `20/h` is (20, 3600.0)."""
    count, _, unit = value.strip().partition("/")
    if not count.isdigit() or not 1 <= int(count) <= 1_000_000 or unit not in _RATE_UNITS:
        raise ValueError("a rate must be N/s, N/m, N/h or N/d with N from 1 to 1000000")
    return int(count), _RATE_UNITS[unit]
