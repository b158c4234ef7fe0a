"""sign_compact writes any JSON header it is given: the compact form orjson writes, and what
orjson cannot write (integers past 64 bits) through the standard library, never an error."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokenward.tokens.b64 import b64url_decode
from tokenward.tokens.jws import parse_compact, payload_object, sign_compact


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"},
        {"alg": "EdDSA", "kid": "clé-ü"},  # non-ASCII
        {"alg": "EdDSA", "big": 2**70, "neg": -(2**65)},  # past orjson's 64 bits
    ],
)
def test_any_json_header_is_signed_and_reads_back(header: dict[str, object]) -> None:
    key = Ed25519PrivateKey.generate()
    token = sign_compact(header, b'{"sub":"a"}', key.sign)

    jws = parse_compact(token)
    assert jws.header == header
    assert payload_object(jws) == {"sub": "a"}
    segment = b64url_decode(token.split(".", 1)[0])
    assert b" " not in segment  # compact
    key.public_key().verify(jws.signature, jws.signing_input)
