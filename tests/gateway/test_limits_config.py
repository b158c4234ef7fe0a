"""The gateway's `limits:` section: validated like the others, restart-only, checked at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokenward.gateway.compiled import check_reloadable
from tokenward.gateway.config import ConfigError, parse_config
from tokenward.serving.limits import HeadLimits

ROUTES = "routes:\n  - {name: open, prefix: /open, upstreams: ['http://127.0.0.1:9'], auth: none}\n"


def test_defaults_and_values() -> None:
    assert parse_config(ROUTES).limits == HeadLimits()
    config = parse_config(
        "limits:\n  max_header_bytes: 16384\n  max_url_bytes: 4096\n  max_header_fields: 50\n"
        "  header_timeout: 2.5\n  max_connections: 300\n  body_timeout: 12\n" + ROUTES
    )
    assert config.limits == HeadLimits(16384, 4096, 50, 2.5, 300, body_timeout=12.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits: {max_header_bytes: 10}", "3: limits.max_header_bytes: must be between 1024"),
        ("limits: {header_timeout: 0}", "3: limits.header_timeout: must be between 0.1 and 600"),
        ("limits: {body_timeout: 601}", "3: limits.body_timeout: must be between 0.1 and 600"),
        ("limits: {body_timeout: soon}", "3: limits.body_timeout: must be a number"),
        ("limits: {max_connections: many}", "3: limits.max_connections: must be an integer"),
        ("limits: {max_body: 1}", "3: limits.max_body: unknown field"),
    ],
)
def test_bad_values_are_refused_with_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("# one\n# two\n" + text + "\n" + ROUTES, "gateway.yaml")
    assert message in str(caught.value)


def test_limits_need_a_restart() -> None:
    old = parse_config(ROUTES)
    new = parse_config("limits: {header_timeout: 5}\n" + ROUTES)
    with pytest.raises(ValueError, match="limits changed: these need a restart"):
        check_reloadable(old, new, has_validator=False)


def test_a_connection_limit_beyond_the_descriptor_limit_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("limits: {max_connections: 1000000}\n" + ROUTES)
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "max_connections 1000000 needs about 2000256 file descriptors" in result.stderr
    assert "Traceback" not in result.stderr
