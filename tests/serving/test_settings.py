"""The server's limits come from TOKENWARD_* settings, refused when out of bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tokenward.config import Settings
from tokenward.serving.limits import HeadLimits


def test_settings_default_to_the_shared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().head_limits() == HeadLimits()
    monkeypatch.setenv("TOKENWARD_MAX_HEADER_BYTES", "16384")
    monkeypatch.setenv("TOKENWARD_HEADER_TIMEOUT", "2")
    monkeypatch.setenv("TOKENWARD_MAX_CONNECTIONS", "64")
    monkeypatch.setenv("TOKENWARD_BODY_TIMEOUT", "7.5")
    limits = Settings().head_limits()
    assert (
        limits.max_header_bytes,
        limits.header_timeout,
        limits.max_connections,
        limits.body_timeout,
    ) == (16384, 2.0, 64, 7.5)


def test_out_of_bounds_settings_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWARD_MAX_HEADER_FIELDS", "3")
    with pytest.raises(ValidationError, match="max_header_fields must be between 8 and 10000"):
        Settings()


def test_a_body_timeout_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWARD_BODY_TIMEOUT", "0")
    with pytest.raises(ValidationError, match=r"body_timeout must be between 0\.1 and 600"):
        Settings()
