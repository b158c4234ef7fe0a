"""Strict base64url (RFC 7515 §2, RFC 4648 §5): one text per byte string, nothing lenient."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.tokens.b64 import (
    Base64Error,
    b64_to_int,
    b64url_decode,
    b64url_encode,
    int_to_b64,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("", b""),
        ("Zg", b"f"),
        ("Zm8", b"fo"),
        ("Zm9v", b"foo"),
        ("Zm9vYg", b"foob"),
        ("Zm9vYmE", b"fooba"),
        ("Zm9vYmFy", b"foobar"),
        ("-_8", b"\xfb\xff"),  # the two characters that differ from standard base64
        ("A-z_", b"\x03\xec\xff"),
    ],
)
def test_canonical_text_decodes(text: str, data: bytes) -> None:
    assert b64url_decode(text) == data
    assert b64url_encode(data) == text


@pytest.mark.parametrize(
    "text",
    [
        "Zg==",  # padding
        "Zm8=",
        "Zm9v=",
        "=",
        "====",
        "Zm9vYmFy==",
    ],
)
def test_padding_is_refused(text: str) -> None:
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize(
    "text",
    [" Zm9v", "Zm9v ", "Zm 9v", "Zm9v\n", "Zm\r\n9v", "\tZm9v", "Zm9v\x0b", "Zm9v\x0c", "Zm\x009v"],
)
def test_whitespace_and_control_characters_are_refused(text: str) -> None:
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize("text", ["+_8", "-/8", "+/+/", "ab+c", "ab/c", "Zm9v+w"])
def test_standard_alphabet_characters_are_refused(text: str) -> None:
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize(
    "text",
    ["Zm9v.", "Zm9v?", "Zm9v#", "Zm9v%", "Zm*v", "Zm9v!", "Zm9v~", "Zm9v\\", 'Zm9v"'],
)
def test_other_non_alphabet_characters_are_refused(text: str) -> None:
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize(
    ("canonical", "variant"),
    [
        ("Zg", "Zh"),  # len % 4 == 2: the last character has 4 unused bits
        ("Zg", "Zv"),
        ("Zm8", "Zm9"),  # len % 4 == 3: 2 unused bits
        ("Zm8", "Zm-"),
        ("AA", "AB"),
        ("AAA", "AAB"),
        ("-_8", "-_9"),
    ],
)
def test_non_canonical_unused_bits_are_refused(canonical: str, variant: str) -> None:
    """Both texts mean the same bytes to a lenient decoder; only the canonical one is accepted."""
    lenient = base64.urlsafe_b64decode(variant + "=" * (-len(variant) % 4))
    assert lenient == b64url_decode(canonical)
    with pytest.raises(Base64Error, match="unused bits"):
        b64url_decode(variant)


@pytest.mark.parametrize("text", ["A", "AAAAA", "Zm9vY", "Zm9vYmFyZ"])
def test_length_one_mod_four_is_refused(text: str) -> None:
    assert len(text) % 4 == 1
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize("text", ["Zm9vé", "\uff3am9v", "Zm9v\u200b", "Zm9v\U0001f600", "ÿÿÿÿ"])
def test_non_ascii_is_refused(text: str) -> None:
    with pytest.raises(Base64Error):
        b64url_decode(text)


def test_base64_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode("Zg==")


@pytest.mark.parametrize(
    ("value", "length", "text"),
    [(0, None, "AA"), (65537, None, "AQAB"), (1, 2, "AAE"), (255, None, "_w"), (256, None, "AQA")],
)
def test_integers_round_trip(value: int, length: int | None, text: str) -> None:
    assert int_to_b64(value, length) == text
    assert b64_to_int(text) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert set(text) <= set(ALPHABET)
    assert len(text) % 4 != 1
    assert b64url_decode(text) == data


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_decode_accepts_exactly_the_encodings_of_bytes(text: str) -> None:
    """Whatever decodes is the one canonical encoding of its bytes; anything else raises."""
    try:
        data = b64url_decode(text)
    except Base64Error:
        return
    assert b64url_encode(data) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET + "=+/ \n", max_size=40))
def test_decode_over_near_alphabet_is_canonical_or_refused(text: str) -> None:
    """Refused only for a foreign character, a length of 1 mod 4, or non-zero unused bits."""
    try:
        data = b64url_decode(text)
    except Base64Error:
        if any(char in text for char in "=+/ \n") or len(text) % 4 == 1:
            return
        lenient = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        assert b64url_encode(lenient) != text  # the unused bits were not zero
        return
    assert b64url_encode(data) == text
