"""Settings, read once by the composition root (wiring.py). Nothing else reads the environment.

Every field can be set as TOKENWARD_<NAME> (e.g. TOKENWARD_ISSUER) or in `<data_dir>/tokenward.env`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenward.tokens.algorithms import GENERATED
from tokenward.tokens.errors import MasterKeyError


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
    revocation_resync_seconds: float = 2.0  # re-read the revocation log this often
    revocation_max_staleness: float = 30.0  # past this without a sync, validators answer 503
    revocation_fail_open: bool = False  # True: keep serving on a stale mirror (and log it)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Strict-Transport-Security on every response when the issuer is https (never over http).
    hsts_max_age: int = Field(default=2 * 365 * 86400, ge=0)
    hsts_include_subdomains: bool = True

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

    @field_validator("signing_alg")
    @classmethod
    def _known_alg(cls, value: str) -> str:
        if value not in GENERATED:
            raise ValueError(f"signing_alg must be one of {', '.join(GENERATED)}")
        return value

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
