"""Monitoring settings: one model per detector, each with its thresholds and its response.

Read once by the composition root (`deploy.wiring`) from `TOKENWARD_MONITOR_*`, nested
fields with `__`, e.g. `TOKENWARD_MONITOR_IP_SPREAD__MAX_NETWORKS=5` or
`TOKENWARD_MONITOR_FAILURES__RESPONSE=alert`. docs/monitoring.md explains every field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Response = Literal["alert", "revoke_token", "revoke_session", "revoke_subject", "block_ip"]
RESPONSES: tuple[str, ...] = (
    "alert",
    "revoke_token",
    "revoke_session",
    "revoke_subject",
    "block_ip",
)


class DetectorSettings(BaseModel):
    enabled: bool = True
    response: Response = "alert"
    block_seconds: float = Field(default=900.0, gt=0)  # for response block_ip
    severity: Literal["low", "medium", "high"] = "medium"


class IpSpreadSettings(DetectorSettings):
    """One token seen from more than `max_networks` addresses (or networks) in `window`."""

    window: float = Field(default=300.0, gt=0)
    max_networks: int = Field(default=3, ge=1)
    group: Literal["ip", "network"] = "network"  # network: IPv4 /24, IPv6 /64
    ipv4_prefix: int = Field(default=24, ge=8, le=32)
    ipv6_prefix: int = Field(default=64, ge=16, le=128)
    severity: Literal["low", "medium", "high"] = "high"


class RateSettings(DetectorSettings):
    """Requests of a token or subject in the current bucket far above its EWMA baseline."""

    bucket: float = Field(default=60.0, gt=0)
    alpha: float = Field(default=0.3, gt=0, le=1)  # weight of the newest closed bucket
    factor: float = Field(default=8.0, gt=1)
    min_requests: int = Field(default=300, ge=1)  # never fire below this many per bucket
    warmup_buckets: int = Field(default=1, ge=0)  # closed buckets needed before judging
    per_token: bool = True
    per_subject: bool = True


class RefreshReuseSettings(DetectorSettings):
    severity: Literal["low", "medium", "high"] = "high"


class FailureSettings(DetectorSettings):
    """Failed validations plus failed sign-ins from one IP within `window`."""

    window: float = Field(default=60.0, gt=0)
    threshold: int = Field(default=30, ge=1)
    response: Response = "block_ip"
    # CIDRs never blocked. Loopback by default: a reverse proxy on this machine makes every
    # request come from it, and blocking it would take the whole service down.
    exempt_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])


class SessionEndedSettings(DetectorSettings):
    """A token presented after its session was ended (logout, admin, force logout)."""

    grace: float = Field(default=5.0, ge=0)  # requests in flight at logout are not suspicious
    recheck: float = Field(default=30.0, gt=0)  # how long a session lookup is cached


class RiskSettings(BaseModel):
    """Learned risk scoring (monitor/risk.py): thresholds on the 0-1 score map to actions."""

    enabled: bool = False  # opt-in: needs the `risk` extra and days of traffic to learn from
    model: Literal["novelty", "hst"] = "novelty"
    alert_at: float = Field(default=0.9, ge=0, le=1)
    step_up_at: float = Field(default=0.9, ge=0, le=1)  # context.risk raised for `hold` s
    revoke_at: float = Field(default=0.99, ge=0, le=1)
    revoke_response: Literal["revoke_token", "revoke_session", "revoke_subject"] = "revoke_token"
    block_ip_at: float = Field(default=0.95, ge=0, le=1)  # scores about an address alone
    block_seconds: float = Field(default=900.0, gt=0)
    hold: float = Field(default=3600.0, gt=0)  # how long a high score stays in context.risk
    max_entities: int = Field(default=100_000, ge=100)  # per profile kind, LRU
    geoip: str | None = None  # a MaxMind City database: places for impossible travel


class WebhookSettings(BaseModel):
    url: str | None = None
    secret: SecretStr | None = None
    timeout: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)
    base_delay: float = Field(default=1.0, gt=0)  # 1 s, 2 s, 4 s, ... between attempts
    max_delay: float = Field(default=60.0, gt=0)
    capacity: int = Field(default=1000, ge=1)  # undelivered alerts kept; the oldest go first


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWARD_MONITOR_", env_nested_delimiter="__", extra="ignore"
    )

    enabled: bool = True
    buffer: int = Field(default=10_000, ge=1)  # events waiting for the monitor's task
    drain_interval: float = Field(default=0.2, gt=0)
    batch: int = Field(default=2000, ge=1)
    max_keys: int = Field(default=100_000, ge=100)  # per window map; the oldest keys go first
    cooldown: float = Field(default=300.0, ge=0)  # one alert per detector and target per cooldown
    max_alerts: int = Field(default=1000, ge=10)  # kept for the console
    stats_bucket: float = Field(default=60.0, gt=0)  # the dashboard's time resolution
    stats_buckets: int = Field(default=60, ge=2)
    audit_log: str | None = None  # a file path; None = standard error; "off" = no audit lines
    api_prefixes: list[str] = Field(default_factory=lambda: ["/api/", "/userinfo"])
    ip_spread: IpSpreadSettings = Field(default_factory=IpSpreadSettings)
    rate: RateSettings = Field(default_factory=RateSettings)
    refresh_reuse: RefreshReuseSettings = Field(default_factory=RefreshReuseSettings)
    failures: FailureSettings = Field(default_factory=FailureSettings)
    session_ended: SessionEndedSettings = Field(default_factory=SessionEndedSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
