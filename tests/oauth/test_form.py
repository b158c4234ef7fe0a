"""Strict form parsing (RFC 6749 §3.1, Appendix B)."""

from __future__ import annotations

import pytest

from tokenward.oauth.errors import InvalidRequest
from tokenward.oauth.form import parse_form

FORM = "application/x-www-form-urlencoded"


def test_parses_and_decodes() -> None:
    form = parse_form(b"grant_type=client_credentials&scope=a+b%20c", FORM)
    assert form.params == {"grant_type": "client_credentials", "scope": "a b c"}


def test_content_type_parameters_allowed() -> None:
    assert parse_form(b"a=1", FORM + "; charset=UTF-8").params == {"a": "1"}


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "multipart/form-data"]
)
def test_other_content_types_refused(content_type: str | None) -> None:
    with pytest.raises(InvalidRequest, match="x-www-form-urlencoded"):
        parse_form(b"a=1", content_type)


def test_repeated_parameter_refused() -> None:
    with pytest.raises(InvalidRequest, match="repeated"):
        parse_form(b"scope=a&scope=b", FORM)


def test_empty_values_count_as_omitted() -> None:
    assert parse_form(b"scope=&state=x", FORM).params == {"state": "x"}


def test_resource_may_repeat() -> None:
    form = parse_form(b"resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fb.example", FORM)
    assert form.resources == ("https://a.example", "https://b.example")
    assert "resource" not in form.params


@pytest.mark.parametrize("body", [b"\xff\xfe=1", b"a=%ff"])
def test_non_utf8_refused_or_replaced_never_crashes(body: bytes) -> None:
    try:
        form = parse_form(body, FORM)
    except InvalidRequest:
        return
    assert all(isinstance(value, str) for value in form.params.values())


def test_too_many_fields_refused() -> None:
    body = "&".join(f"p{i}=v" for i in range(100)).encode()
    with pytest.raises(InvalidRequest):
        parse_form(body, FORM)


def test_overlong_value_refused() -> None:
    with pytest.raises(InvalidRequest, match="too long"):
        parse_form(b"a=" + b"x" * 20000, FORM)
