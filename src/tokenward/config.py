"""Settings, read once by the composition root (deploy/). Nothing else reads the environment.

Every field can be set as TOKENWARD_<NAME> (e.g. TOKENWARD_ISSUER) or in `<data_dir>/tokenward.env`
(docs/configuration.md lists them all). `load_settings` applies the precedence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenward.core.proxies import IpNetwork, parse_networks
from tokenward.serving.limits import HeadLimits
from tokenward.tokens.algorithms import ALGORITHMS, GENERATED
from tokenward.tokens.errors import MasterKeyError

ENV_FILE = "tokenward.env"  # in the data directory; the environment overrides it
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


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
    redis_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None  # default: <data_dir>/master.key when it exists

    signing_alg: str = "ES256"
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
    revocation_resync_seconds: float = 2.0  # re-read the revocation log this often
    revocation_max_staleness: float = 30.0  # past this without a sync, validators answer 503
    revocation_fail_open: bool = False  # True: keep serving on a stale mirror (and log it)
    revocation_feed: bool = True  # publish GET /revocations (digests) to remote resource servers
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
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
    settings = Settings(_env_file=data_dir / ENV_FILE, data_dir=data_dir, **given)  # type: ignore[call-arg]
    if default_issuer is not None and "issuer" not in settings.model_fields_set:
        given["issuer"] = default_issuer
        settings = Settings(_env_file=data_dir / ENV_FILE, data_dir=data_dir, **given)  # type: ignore[call-arg]
    return settings


def loopback_issuer(host: str, port: int) -> str | None:
    """The development issuer for a loopback bind; None for any other address, which needs
    TOKENWARD_ISSUER (the https URL clients reach, usually a load balancer's)."""
    if host not in LOOPBACK_HOSTS:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


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
