"""Wycheproof json_web_key_test.json: each group's key set must be refused, or the token checked.

`private`/`public` hold a JWKS. We load it with `key_set_from_jwks(allow_secret=True)` and verify
the case's `jws` against it, looking the key up by `kid`. An invalid case must end in a
`JoseError`: the set refused (`KeySetRejected`, `KeyRejected`), the key skipped so the lookup
finds nothing (`UnknownKeyError`), or the signature refused. No documented exceptions here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import SHARED, shared_path
from tokenward.core.errors import JoseError
from tokenward.tokens.b64 import b64url_decode
from tokenward.tokens.errors import KeyRejected, KeySetRejected
from tokenward.tokens.jwk import key_set_from_jwks
from tokenward.tokens.jws import UnknownKeyError, verify_compact

VECTORS = ("vectors", "wycheproof", "testvectors_v1", "json_web_key_test.json")

# How each invalid case fails, to show it is the hygiene rule named in the group that fires.
EXPECTED_REJECTION: dict[int, type[JoseError]] = {
    1: KeySetRejected,  # mixed symmetric and asymmetric keys
    4: KeySetRejected,  # duplicate kid
    6: UnknownKeyError,  # use: enc, skipped by the set loader
    7: KeyRejected,  # ROCA modulus
    8: KeyRejected,  # 1024-bit RSA
    9: KeyRejected,  # e = 1
    10: KeyRejected,  # HS256 secret shorter than the hash
    11: KeyRejected,
    12: KeyRejected,
    16: KeyRejected,  # empty secret
    17: KeyRejected,
    18: KeyRejected,
    19: KeyRejected,  # alg ES521 (not a JOSE name) on P-256
    20: KeyRejected,  # alg ES224
    21: UnknownKeyError,  # EC key with use: enc, skipped
    22: KeyRejected,  # point not on the curve
    23: KeyRejected,  # ES256 on a P-384 key
    24: KeyRejected,  # ES256 on an RSA key
    25: KeyRejected,  # A256GCM is not a signature algorithm
    26: KeyRejected,  # A256KW neither
}


def _load() -> dict[str, Any] | None:
    path = SHARED.joinpath(*VECTORS)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "case"


def _cases(data: dict[str, Any] | None) -> list[Any]:
    if data is None:
        return [pytest.param({}, {}, id="vectors-missing")]
    return [
        pytest.param(
            group, case, id=f"tc{case['tcId']}-{_slug(group['comment'])}-{case['comment']}"
        )
        for group in data["testGroups"]
        for case in group["tests"]
    ]


DATA = _load()


def _verify(group: dict[str, Any], token: str) -> str:
    keys = key_set_from_jwks(group.get("public", group["private"]), allow_secret=True)
    _jws, key = verify_compact(token, keys.get)
    return key.alg.name


@pytest.mark.parametrize(("group", "case"), _cases(DATA))
def test_json_web_key_vector(group: dict[str, Any], case: dict[str, Any]) -> None:
    shared_path(*VECTORS)
    if case["result"] == "valid":
        header = json.loads(b64url_decode(case["jws"].split(".")[0]))
        assert _verify(group, case["jws"]) == header["alg"]
        return
    assert case["result"] == "invalid"
    expected = EXPECTED_REJECTION.get(case["tcId"], JoseError)
    with pytest.raises(expected):
        _verify(group, case["jws"])


def test_every_invalid_case_has_an_expected_reason() -> None:
    shared_path(*VECTORS)
    assert DATA is not None
    invalid = {
        case["tcId"]
        for group in DATA["testGroups"]
        for case in group["tests"]
        if case["result"] == "invalid"
    }
    # tcId 3 is a modified signature on a good set: a plain JoseError, not a hygiene rule.
    assert invalid - set(EXPECTED_REJECTION) == {3}
