"""Config loading: a good file becomes frozen values; a bad one is refused with line and field."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tokenward.gateway.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"
GOOD = """\
trust:
  issuer: https://as.example
  audience: https://api.example
rate_limits:
  hourly: {requests: 50, per: 3600, key: client}
routes:
  - name: orders
    prefix: /orders
    methods: [get, POST]
    upstreams: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]
    auth: bearer
    scopes: [orders:read]
    rate_limit: hourly
    ip: {allow: [10.0.0.0/8, "2001:db8::/32"], deny: [10.9.0.0/16]}
    timeouts: {connect: 1.5, read: 10}
  - name: health
    prefix: /health
    upstreams: http://10.0.0.1:8000
    auth: none
"""


def test_good_config() -> None:
    config = parse_config(GOOD, "gw.yaml")
    orders, health = config.routes
    assert orders.methods == frozenset({"GET", "POST"})
    assert [u.host for u in orders.upstreams] == ["10.0.0.1", "10.0.0.2"]
    assert orders.upstreams[0].base_path == "/v1"
    assert orders.rate_limit is not None
    assert (orders.rate_limit.requests, orders.rate_limit.key) == (50, "client")
    assert ipaddress.ip_network("2001:db8::/32") in orders.ip.allow
    assert (orders.connect_timeout, orders.read_timeout) == (1.5, 10.0)
    assert health.rate_limit is None  # open routes get no token-keyed default
    assert config.identity_headers["subject"] == "x-auth-subject"


def test_bearer_routes_default_to_1000_per_hour_per_token() -> None:
    config = parse_config(GOOD.replace("    rate_limit: hourly\n", ""))
    limit = config.routes[0].rate_limit
    assert limit is not None
    assert (limit.requests, limit.per, limit.key) == (1000, 3600.0, "token")


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.routes


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        (
            "    scopes: [orders:read]",
            "    scope: [orders:read]",
            12,
            "routes[0].scope",
            "unknown field",
        ),
        (
            "    auth: bearer",
            "    auth: signed_url",
            12,
            "routes[0].scopes",
            "scopes need a token",
        ),
        ("    auth: bearer", "    auth: magic", 11, "routes[0].auth", "must be one of"),
        ("10.9.0.0/16", "10.9.0.0/99", 14, "routes[0].ip.deny[0]", "not an IPv4 or IPv6"),
        (
            "http://10.0.0.2:8000/v1",
            "ftp://10.0.0.2/v1",
            10,
            "routes[0].upstreams[1]",
            "must be an http:// or https:// URL",
        ),
        (
            "    methods: [get, POST]",
            "    methods: [FETCH]",
            9,
            "routes[0].methods",
            "unknown HTTP method",
        ),
        ("connect: 1.5", "connect: -1", 15, "routes[0].timeouts.connect", "at least"),
        (
            "rate_limit: hourly",
            "rate_limit: daily",
            13,
            "routes[0].rate_limit",
            "no rate_limits policy named 'daily'",
        ),
        ("    prefix: /orders", "    prefix: orders", 8, "routes[0].prefix", "must start with /"),
        ("  - name: health", "  - name: orders", 16, "routes[1]", "used twice"),
        ("  audience: https://api.example\n", "", 6, "routes[0]", "needs audience"),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {url: http://10.0.0.2:8000/v1, weight: 0}]",
            11,
            "routes[0].upstreams[1].weight",
            "from 1 to 1000 (to drain an upstream",
        ),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {url: http://10.0.0.2:8000/v1, weight: 1001}]",
            11,
            "routes[0].upstreams[1].weight",
            "from 1 to 1000",
        ),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {url: http://10.0.0.2:8000/v1, weight: 2.5}]",
            11,
            "routes[0].upstreams[1].weight",
            "must be an integer",
        ),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {weight: 2}]",
            11,
            "routes[0].upstreams[1]",
            "url: is required",
        ),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {url: http://10.0.0.2:8000/v1, wieght: 2}]",
            11,
            "routes[0].upstreams[1].wieght",
            "unknown field",
        ),
        (
            "http://10.0.0.2:8000/v1]",
            "\n      {url: 'ftp://10.0.0.2/v1', weight: 2}]",
            11,
            "routes[0].upstreams[1].url",
            "must be an http:// or https:// URL",
        ),
    ],
)
def test_bad_config_names_line_and_field(
    old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD.replace(old, new, 1), "gw.yaml")
    error = caught.value
    assert (error.line, error.field) == (line, field), str(error)
    assert message in str(error)
    assert str(error).startswith(f"gw.yaml:{line}: {field}: ")


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gw.yaml:4: routes\[0\].auth: appears twice"):
        parse_config(
            "trust: {issuer: https://a, audience: b}\nroutes:\n"
            "  - {prefix: /, upstreams: [http://h], auth: none,\n     auth: bearer}\n",
            "gw.yaml",
        )


def test_not_yaml_and_empty_and_missing() -> None:
    with pytest.raises(ConfigError, match=r"gw.yaml:3: not valid YAML"):
        parse_config("routes:\n  - [unclosed\n", "gw.yaml")
    with pytest.raises(ConfigError, match="the file is empty"):
        parse_config("", "gw.yaml")
    with pytest.raises(ConfigError, match="routes: is required"):
        parse_config("listen: {port: 80}\n", "gw.yaml")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config("/nonexistent/gateway.yaml")


def test_introspection_needs_one_secret_source() -> None:
    text = GOOD.replace(
        "  audience: https://api.example\n",
        "  audience: https://api.example\n  introspection: {client_id: gw}\n",
    )
    with pytest.raises(ConfigError, match="exactly one of client_secret_env"):
        parse_config(text)


def test_bff_section_is_required_and_checked() -> None:
    bff_route = GOOD.replace("    auth: bearer\n", "    auth: bff\n", 1)
    with pytest.raises(ConfigError, match="bff: is required when a route uses auth: bff"):
        parse_config(bff_route)
    section = "bff:\n  client_id: web\n  redirect_uri: https://gw/cb\n  client_secret_env: S\n"
    with pytest.raises(ConfigError, match=r"gw.yaml:2: bff: allowed_origins: is required"):
        parse_config(section + bff_route, "gw.yaml")
    config = parse_config(section + "  allowed_origins: https://app.example/\n" + bff_route)
    assert config.bff is not None
    assert config.bff.allowed_origins == ("https://app.example",)
    assert config.bff.secure_cookies is True
    assert config.routes[0].auth == "bff"


def test_bff_idle_timeout_and_workers_need_a_shared_store() -> None:
    bff_route = GOOD.replace("    auth: bearer\n", "    auth: bff\n", 1)
    section = (
        "bff:\n  client_id: web\n  redirect_uri: https://gw/cb\n  client_secret_env: S\n"
        "  allowed_origins: [https://app.example]\n  session_ttl: 3600\n"
    )
    assert parse_config(section + bff_route).bff.idle_timeout is None  # type: ignore[union-attr]
    config = parse_config(section + "  idle_timeout: 900\n" + bff_route)
    assert config.bff is not None
    assert (config.bff.session_ttl, config.bff.idle_timeout) == (3600, 900)
    with pytest.raises(ConfigError, match="idle_timeout: must not exceed session_ttl"):
        parse_config(section + "  idle_timeout: 7200\n" + bff_route)
    # More than one worker: sessions must be in Redis, which the config then has.
    with pytest.raises(ConfigError, match="browser sessions through Redis"):
        parse_config("workers: 2\n" + section + bff_route)
    shared = bff_route.replace("rate_limits:\n", "rate_limits:\n  redis_url: redis://r:6379\n")
    assert parse_config("workers: 2\n" + section + shared).workers == 2


def test_dpop_route_public_url_and_nonces() -> None:
    dpop_route = GOOD.replace("    auth: bearer\n", "    auth: dpop\n", 1)
    config = parse_config(
        "public_url: https://api.example/gw/\n"
        "dpop: {algorithms: [ES256, EdDSA], nonce_secret_env: N}\n" + dpop_route
    )
    assert config.routes[0].auth == "dpop"
    assert config.public_url == "https://api.example/gw"
    assert config.dpop.algorithms == ("ES256", "EdDSA")
    assert config.dpop.nonces
    assert config.routes[0].rate_limit is not None  # token-keyed default, as for bearer
    with pytest.raises(ConfigError, match=r"gw.yaml:1: public_url: must be an http"):
        parse_config("public_url: ftp://x\n" + dpop_route, "gw.yaml")
    with pytest.raises(ConfigError, match=r"gw.yaml:1: dpop.algorithms: must be some of"):
        parse_config("dpop: {algorithms: [HS256]}\n" + dpop_route, "gw.yaml")
    with pytest.raises(ConfigError, match=r"trust\.issuer is required"):
        parse_config("routes:\n  - {prefix: /x, upstreams: [http://h], auth: dpop}\n")


def test_signed_url_route_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_GW_TEST_LINK_KEY", "k" * 32)
    head = "routes:\n  - name: media\n    prefix: /media\n    upstreams: [http://h]\n"
    route = head + "    auth: signed_url\n"
    good = route + (
        "    signed_url:\n      leeway: 5\n      keys:\n"
        "        - {kid: new, secret_env: TW_GW_TEST_LINK_KEY}\n"
        "        - {kid: old, secret: " + "s" * 40 + "}\n"
    )
    config = parse_config(good)
    settings = config.routes[0].signed_url
    assert settings is not None
    assert [kid for kid, _ in settings.keys] == ["new", "old"]
    assert settings.leeway == 5
    assert "k" * 32 not in repr(config)  # secrets never in a repr
    assert config.routes[0].rate_limit is None  # no token: no token-keyed default
    with pytest.raises(ConfigError, match=r"gw.yaml:2: routes\[0\]: signed_url: \{keys"):
        parse_config(route, "gw.yaml")
    short = good.replace("s" * 40, "short")
    with pytest.raises(ConfigError, match=r"keys\[1\].secret: a signing secret needs at least 32"):
        parse_config(short)
    unset = good.replace("TW_GW_TEST_LINK_KEY", "TW_GW_TEST_UNSET")
    with pytest.raises(ConfigError, match="TW_GW_TEST_UNSET is not set"):
        parse_config(unset)
    with pytest.raises(ConfigError, match=r"signed_url: needs auth: signed_url"):
        parse_config(good.replace("auth: signed_url", "auth: none"))
