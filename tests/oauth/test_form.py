"""Strict form parsing (RFC 6749 §3.1, Appendix B)."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

import pytest

from tokenward.oauth import form
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


FORM_ALPHABET = "ab=&%+0 é;"


@pytest.mark.parametrize("seed", range(5))
def test_the_direct_split_agrees_with_parse_qsl(seed: int) -> None:
    """The split of an unescaped form (form._pairs) against parse_qsl itself, on random forms
    built from the characters that matter (separators, escapes, blanks, non-ASCII) and on the
    edge cases; escaped forms go to parse_qsl, so every form is checked the same way."""
    chooser = random.Random(seed)
    forms = ["", "&", "&&a=1&", "a", "a=", "=b", "a==b", "a=1&a=2", "&".join(["x=1"] * 64)]
    unescaped = FORM_ALPHABET.replace("%", "").replace("+", "")  # the forms split directly
    for alphabet, count in ((unescaped, 300), (FORM_ALPHABET, 50)):
        forms += [
            "".join(chooser.choices(alphabet, k=chooser.randint(0, 30))) for _ in range(count)
        ]
    for text in forms:
        expected: list[tuple[str, str]] | str
        try:
            expected = parse_qsl(text, keep_blank_values=True, max_num_fields=form.MAX_FIELDS)
        except ValueError as exc:
            expected = str(exc)
        try:
            got: list[tuple[str, str]] | str = form._pairs(text)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, text
    with pytest.raises(ValueError, match="Max number of fields exceeded"):
        form._pairs("&".join(["x=1"] * 65))
