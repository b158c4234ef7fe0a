"""Settings precedence: flag > TOKENWARD_* environment > <data_dir>/tokenward.env > default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from tokenward.config import ENV_FILE, Settings, load_settings, loopback_issuer, rate_limit


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"TOKENWARD_{name.upper()}", raising=False)


def test_the_env_file_in_the_data_dir_is_read(tmp_path: Path) -> None:
    (tmp_path / ENV_FILE).write_text("TOKENWARD_ISSUER=https://file.example\nTOKENWARD_LEEWAY=5\n")
    settings = load_settings(data_dir=tmp_path)
    assert settings.issuer == "https://file.example"
    assert settings.leeway == 5


def test_environment_beats_the_env_file_and_flags_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ENV_FILE).write_text("TOKENWARD_ISSUER=https://file.example\n")
    monkeypatch.setenv("TOKENWARD_ISSUER", "https://env.example")
    assert load_settings(data_dir=tmp_path).issuer == "https://env.example"
    assert load_settings(data_dir=tmp_path, issuer="https://flag.example").issuer == (
        "https://flag.example"
    )
    assert load_settings(data_dir=tmp_path, issuer=None).issuer == "https://env.example"


def test_data_dir_flag_beats_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env, from_flag = tmp_path / "env", tmp_path / "flag"
    from_env.mkdir()
    (from_env / ENV_FILE).write_text("TOKENWARD_LEEWAY=7\n")
    monkeypatch.setenv("TOKENWARD_DATA_DIR", str(from_env))
    assert load_settings().data_dir == from_env
    assert load_settings().leeway == 7  # the env file of the environment's data dir
    assert load_settings(data_dir=from_flag).data_dir == from_flag
    assert load_settings(data_dir=from_flag).leeway == 30.0


def test_the_default_issuer_applies_only_when_nothing_sets_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = "http://127.0.0.1:9000"
    assert load_settings(data_dir=tmp_path, default_issuer=default).issuer == default
    monkeypatch.setenv("TOKENWARD_ISSUER", "https://env.example")
    # `serve --port 9000` must not override the issuer the environment sets (docs/deployment.md)
    assert load_settings(data_dir=tmp_path, default_issuer=default).issuer == (
        "https://env.example"
    )


def test_loopback_issuers() -> None:
    assert loopback_issuer("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert loopback_issuer("localhost", 8001) == "http://localhost:8001"
    assert loopback_issuer("::1", 8002) == "http://[::1]:8002"
    assert loopback_issuer("0.0.0.0", 8000) is None  # noqa: S104 - the address under test
    assert loopback_issuer("10.0.0.5", 8000) is None


# A value other than the default for every setting, as the environment spells it.
SAMPLES = {
    "data_dir": "/srv/tokenward",
    "issuer": "https://auth.example.com",
    "database_url": "postgresql+asyncpg://tw@db.example:5432/tw",
    "database_schema": "tenant_a",
    "database_pool_size": "24",
    "redis_url": "redis://cache.example:6379/1",
    "master_key": "B" * 43,
    "master_key_file": "/run/secrets/master.key",
    "signing_alg": "EdDSA",
    "signing_algs": "ML-DSA-65,ES256",
    "audience_signing_algs": '{"https://pqc.example/api": "EdDSA"}',  # fapi2 (below) allows it
    "key_schedule_seconds": "5",
    "workers": "2",
    "key_rotation_days": "7",
    "jwks_max_age": "60",
    "key_publish_ahead": "900",
    "access_token_lifetime": "300",
    "refresh_token_lifetime": "86400",
    "refresh_reuse_grace": "0",
    "leeway": "5",
    "default_audience": "https://api.example.com",
    "token_cache_entries": "50",
    "dpop_nonces": "false",
    "require_pushed_authorization_requests": "true",
    "require_signed_request_object": "true",
    "par_lifetime": "90",
    "profile": "fapi2",
    "revocation_resync_seconds": "1",
    "revocation_max_staleness": "10",
    "revocation_fail_open": "true",
    "revocation_feed": "false",
    "max_body_bytes": "2048",
    "metrics": "127.0.0.1:9464",
    "otel_enabled": "true",
    "max_header_bytes": "16384",
    "max_url_bytes": "4096",
    "max_header_fields": "50",
    "header_timeout": "5",
    "max_connections": "256",
    "body_timeout": "12.5",
    "trusted_proxies": "10.0.0.0/8",
    "hsts_max_age": "600",
    "hsts_include_subdomains": "false",
    "exchange_trusted_issuers": (
        '[{"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",'
        ' "algorithm": "ES256"}]'
    ),
    "ssl_certfile": "/etc/tokenward/server.pem",
    "ssl_keyfile": "/etc/tokenward/server.key",
    "ssl_ca_certs": "/etc/tokenward/clients-ca.pem",
    "ssl_cert_reqs": "optional",
    "mtls_certificate_header": "X-SSL-Client-Cert",
    "mtls_base_url": "https://mtls.auth.example.com",
    "ssf_transmitters": (
        '[{"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",'
        ' "algorithm": "ES256"}]'
    ),
    "ssf_max_age": "600.0",
    "registration": "initial_token",
    "registration_scopes": "openid profile",
    "registration_rate": "5/m",
    "registration_max_open_clients": "500",
    "registration_statement_issuers": (
        '[{"issuer": "https://sw.example", "jwks_uri": "https://sw.example/jwks",'
        ' "algorithm": "ES256"}]'
    ),
    "registration_require_statement": "true",
    "outbound_allow_loopback": "true",
    "portal_gateway_configs": "/etc/tokenward/gateway.yaml,/etc/tokenward/partners.yaml",
    "portal_max_apps": "3",
}
STRUCTURED = {
    "exchange_trusted_issuers",
    "audience_signing_algs",
    "ssf_transmitters",
    "registration_statement_issuers",
}  # JSON, compared as JSON


def test_every_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(SAMPLES) == set(Settings.model_fields)  # a new setting needs a sample here
    for name, value in SAMPLES.items():
        monkeypatch.setenv(f"TOKENWARD_{name.upper()}", value)
    settings = load_settings()
    for name, value in SAMPLES.items():
        read = getattr(settings, name)
        if isinstance(read, SecretStr):
            read = read.get_secret_value()
        default = Settings.model_fields[name].default
        assert read != default, name
        if name in STRUCTURED:
            dumped = read if isinstance(read, dict) else [item.model_dump() for item in read]
            assert dumped == json.loads(value), name
            continue
        assert str(read).lower() == value.lower() or float(read) == float(value), name


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("signing_algs", "ML-DSA-65,HS256", "not an asymmetric algorithm"),
        ("signing_algs", "ML-DSA-99", "not an asymmetric algorithm"),
        ("audience_signing_algs", '{"https://a.example": "none"}', "needs an asymmetric"),
        ("key_publish_ahead", "100", "twice jwks_max_age"),
    ],
)
def test_signing_settings_refuse_what_cannot_sign(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"TOKENWARD_{name.upper()}", value)
    with pytest.raises(ValueError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("registration", "anyone", "registration must be one of off, initial_token, open"),
        ("registration_rate", "20", "a rate must be"),
        ("registration_rate", "0/h", "a rate must be"),
        ("registration_rate", "20/week", "a rate must be"),
        ("registration_max_open_clients", "0", "greater than or equal to 1"),
        ("registration_require_statement", "true", "needs registration_statement_issuers"),
    ],
)
def test_registration_settings_refuse_what_they_cannot_enforce(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"TOKENWARD_{name.upper()}", value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_registration_rates_read_as_requests_per_seconds() -> None:
    assert rate_limit("20/h") == (20, 3600.0)
    assert rate_limit("5/s") == (5, 1.0)
    assert rate_limit("100/d") == (100, 86400.0)


def test_profile_fapi2_needs_a_fapi2_signing_algorithm() -> None:
    with pytest.raises(ValueError, match="profile fapi2 needs signing_alg"):
        Settings(profile="fapi2", signing_alg="RS256")
    assert Settings(profile="fapi2", signing_alg="PS256").profile == "fapi2"
    # An audience mapped to ML-DSA under fapi2: refused, with FAPI 2.0's list as the reason.
    with pytest.raises(ValueError, match=r"ML-DSA-65 is not in FAPI 2\.0's PS256/ES256/EdDSA list"):
        Settings(profile="fapi2", audience_signing_algs={"https://pqc.example/api": "ML-DSA-65"})
    assert Settings(profile="fapi2", audience_signing_algs={"https://a.example": "PS256"})
    with pytest.raises(ValueError, match="profile"):
        Settings(profile="fapi3")
