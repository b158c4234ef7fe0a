"""Strict base64url (RFC 7515 §2, RFC 4648 §5): no padding, no whitespace, canonical unused bits.

Lenient decoders accept tokens that differ from the signed bytes only in ignored characters or
bits; Wycheproof's base64 cases (tcId 357-377) probe exactly that, so we refuse them all.
"""

from __future__ import annotations

import base64
import binascii

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {char: index for index, char in enumerate(_ALPHABET)}
# Low bits that must be zero in the last character, by len % 4.
_UNUSED_BITS_MASK = {2: 0x0F, 3: 0x03}
_PADDING = {0: b"", 2: b"==", 3: b"="}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class Base64Error(ValueError):
    """The text is not canonical unpadded base64url."""


def b64url_decode(text: str) -> bytes:
    remainder = len(text) % 4
    # '+', '/' and '=' are valid for a2b_base64 after translation, so refuse them first;
    # strict mode then refuses every other non-alphabet character (whitespace included).
    if remainder == 1 or "+" in text or "/" in text or "=" in text:
        raise Base64Error("not canonical base64url")
    try:
        standard = text.encode("ascii").translate(_TO_STANDARD)  # bytes.translate: table lookup
        data = binascii.a2b_base64(standard + _PADDING[remainder], strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Base64Error("not canonical base64url") from None
    if remainder and _VALUE[text[-1]] & _UNUSED_BITS_MASK[remainder]:
        raise Base64Error("non-zero unused bits in base64url")
    return data


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def int_to_b64(value: int, length: int | None = None) -> str:
    """Big-endian unsigned integer as base64url (RFC 7518 §2 Base64urlUInt)."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def b64_to_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")
