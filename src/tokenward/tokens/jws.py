"""JWS compact serialization (RFC 7515 §3.1, §5.2), verified against a key pinned to its algorithm.

Only the compact form is accepted: a JSON-serialized JWS is refused (Wycheproof JsonSerialization).
The header's `alg` is compared with the key's own algorithm, never used to choose one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenward.core.errors import JoseError
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode
from tokenward.tokens.jwk import VerificationKey

# An ML-DSA-87 access token is ~6.3 KB and a DPoP proof carrying an ML-DSA-87 key ~10.5 KB
# (docs/post-quantum.md measures them): 16 KiB admits both and still bounds the work per token.
MAX_COMPACT_LENGTH = 16 * 1024
# Headers that would let the token name its own key (RFC 7515 §4.1.2-4.1.6): never trusted.
_KEY_CARRYING_HEADERS = ("jwk", "jku", "x5u", "x5c")

KeyLookup = Callable[[str | None], VerificationKey | None]


class UnknownKeyError(JoseError):
    """No key with this `kid`: the caller may refresh its key set once and try again."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("no key matches the token's kid")
        self.kid = kid


@dataclass(frozen=True, slots=True)
class CompactJws:
    header: dict[str, Any]
    signing_input: bytes
    payload_segment: str
    signature: bytes
    payload: bytes


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JoseError("duplicate member in JSON object")
    return result


def _reject_constant(name: str) -> Any:
    raise JoseError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
# Parsed headers by their exact segment: an issuer's headers repeat (alg, kid, typ), and parsing
# is a pure function of the segment, so sharing the result is safe and saves a decode per token.
_HEADER_CACHE: dict[str, dict[str, Any]] = {}
_HEADER_CACHE_SIZE = 256


def loads_object(data: bytes) -> dict[str, Any]:
    """Strict JSON object: UTF-8, no duplicate members, no NaN/Infinity, bounded by the caller.

    Fast path: orjson parses, and when re-encoding the result gives back the exact input bytes,
    every member name appeared once (a duplicate would be missing from the re-encoding). That
    holds for every token we mint (we encode with orjson) and costs a third of the stdlib
    parse. Anything else takes the stdlib parser that sees and refuses duplicates.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        try:
            if type(value) is dict and orjson.dumps(value) == data:
                return value
        except orjson.JSONEncodeError:  # orjson parses 1023 levels but re-encodes only 254
            pass
    return _strict_loads(data)


def _strict_loads(data: bytes) -> dict[str, Any]:
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JoseError("segment is not a JSON object") from None
    if not isinstance(value, dict):
        raise JoseError("segment is not a JSON object")
    return value


def decode_segment(segment: str) -> bytes:
    try:
        return b64url_decode(segment)
    except Base64Error:
        raise JoseError("segment is not canonical base64url") from None


def parse_compact(token: str, *, embedded_jwk: bool = False) -> CompactJws:
    """`embedded_jwk` is for DPoP proofs only (RFC 9449 §4.2), which carry their own public key;
    such headers never enter the shared cache, so an access token can never borrow the leniency."""
    if len(token) > MAX_COMPACT_LENGTH or not token.isascii():
        raise JoseError("token is too long or not ASCII")
    segments = token.split(".")
    if len(segments) != 3:
        raise JoseError("a compact JWS has exactly three segments")
    header_segment, payload_segment, signature_segment = segments
    if embedded_jwk:
        header = loads_object(decode_segment(header_segment))
        _check_header({name: value for name, value in header.items() if name != "jwk"})
    else:
        header = _cached_header(header_segment)
    # RFC 7515 §5.2 step 6: the payload must be canonical base64url too, or a MAC over a lenient
    # encoding verifies (Wycheproof 367-371, 375). Decoded once here; payload_object reuses it.
    payload = decode_segment(payload_segment)
    signature = decode_segment(signature_segment)
    signing_input = token[: len(header_segment) + 1 + len(payload_segment)].encode("ascii")
    return CompactJws(header, signing_input, payload_segment, signature, payload)


def _cached_header(header_segment: str) -> dict[str, Any]:
    header = _HEADER_CACHE.get(header_segment)
    if header is None:
        header = loads_object(decode_segment(header_segment))
        _check_header(header)
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[header_segment] = header
    return header


def _check_header(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JoseError("alg header is missing")
    if alg.lower() == "none":
        raise JoseError("alg none is never accepted")
    if "crit" in header:  # RFC 7515 §4.1.11: we implement no extensions, so none is understood
        raise JoseError("crit header names an extension we do not support")
    for name in _KEY_CARRYING_HEADERS:
        if name in header:
            raise JoseError(f"{name} header is not accepted: keys come from our own key set")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JoseError("kid header must be a string")


def verify_compact(token: str, lookup: KeyLookup) -> tuple[CompactJws, VerificationKey]:
    """Parse and verify; the key comes from `lookup(kid)` and must be pinned to the header's alg."""
    jws = parse_compact(token)
    kid = jws.header.get("kid")
    key = lookup(kid)
    if key is None:
        raise UnknownKeyError(kid)
    if jws.header["alg"] != key.alg.name:
        raise JoseError("alg does not match the key's algorithm")
    if not key.verify(jws.signing_input, jws.signature):
        raise JoseError("signature does not verify")
    return jws, key


def payload_object(jws: CompactJws) -> dict[str, Any]:
    """The payload as a strict JSON object (a JWT claims set)."""
    return loads_object(jws.payload)


def payload_bytes(jws: CompactJws) -> bytes:
    return jws.payload


def sign_compact(header: Mapping[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> str:
    try:
        encoded = orjson.dumps(header)  # compact, key order kept
    except orjson.JSONEncodeError:  # what orjson cannot write (integers past 64 bits)
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_segment = b64url_encode(encoded)
    signing_input = f"{header_segment}.{b64url_encode(payload)}"
    return f"{signing_input}.{b64url_encode(sign(signing_input.encode('ascii')))}"
