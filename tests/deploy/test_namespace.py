"""Redis names are a wire contract: a rolling upgrade must keep reading the keys it wrote."""

from __future__ import annotations

from tokenward.config import Settings
from tokenward.deploy.namespace import Namespace

ROOT = "tokenward:7bae8c70456fde67"  # issuer https://auth.example.com, no database schema


def test_the_root_is_the_servers_settings_derivation() -> None:
    settings = Settings.model_construct(issuer="https://auth.example.com", database_schema=None)
    assert Namespace.of(settings).root == ROOT
    assert Namespace.derived("https://auth.example.com", None).root == ROOT


def test_every_derived_name_is_unchanged() -> None:
    names = Namespace(ROOT)
    assert names.revocations == "tokenward:7bae8c70456fde67:revocations"
    assert names.blocklist == "tokenward:7bae8c70456fde67:"
    assert names.windows == "tokenward:7bae8c70456fde67:windows:"
    assert names.alert_claims == "tokenward:7bae8c70456fde67:alerted:"
    assert names.sign_in == "tokenward:7bae8c70456fde67:signin:"
    assert names.replay == "tokenward:7bae8c70456fde67:replay:"
    assert names.usage == "tokenward:7bae8c70456fde67:usage"
    assert names.rate_limits == "tokenward:7bae8c70456fde67:ratelimit:"
    assert names.registration_rate == "tokenward:7bae8c70456fde67:register-rate:"
    assert names.idempotency == "tokenward:7bae8c70456fde67:idempotency:"
    assert names.gateway_replay == "tokenward:7bae8c70456fde67:gateway-replay:"
    assert names.bff_sessions == "tokenward:7bae8c70456fde67:bff:"


def test_a_configured_namespace_is_used_as_given() -> None:
    assert Namespace("acme").revocations == "acme:revocations"
