"""Wycheproof json_web_signature_test.json through `verify_compact`, one pytest case per tcId.

The key is the group's `public` JWK, else its `private` one, loaded by our own loader with
`allow_secret=True`; a key the loader refuses counts as a rejection. The lookup ignores the
token's `kid` and always offers that key, the most permissive choice: whatever we reject, we
reject on the token's merits, not because a lookup missed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import SHARED, shared_path
from tokenward.core.errors import JoseError
from tokenward.tokens.algorithms import ALGORITHMS
from tokenward.tokens.b64 import b64url_decode
from tokenward.tokens.jwk import VerificationKey, key_from_jwk
from tokenward.tokens.jws import verify_compact

VECTORS = ("vectors", "wycheproof", "testvectors_v1", "json_web_signature_test.json")

# Cases where our answer differs from the file's `result`, each with the reason and a fragment of
# the error we raise (None where we accept). FORMAT.md lists 346/347/350/351/372/373 as quirks.
DOCUMENTED_EXCEPTIONS: dict[int, tuple[str, str | None]] = {
    346: (
        "rfc7520 Figure 20 is marked valid, but signs PS384 with a key whose metadata says "
        "alg PS256: we pin the algorithm to the key, so we reject",
        "alg does not match the key's algorithm",
    ),
    347: (
        "rfc7520 Figure 27 is marked valid, but its key is tagged with the non-standard alg "
        "'ES521': our loader refuses a key whose alg it does not know",
        "unsupported algorithm 'ES521'",
    ),
    350: ("same token and key as 346 (with key_ops)", "alg does not match the key's algorithm"),
    351: ("same token and key as 347 (with key_ops)", "unsupported algorithm 'ES521'"),
    372: (
        "marked valid although '?' is inserted into the header: our strict base64url rejects it",
        "not canonical base64url",
    ),
    373: (
        "marked valid although '?' is inserted into the payload: our strict base64url rejects it",
        "not canonical base64url",
    ),
    # In this copy of the vectors the padding these cases are named after is absent: the `jws`
    # is byte for byte the token of tcId 357 (ValidMac), so no verifier can both accept 357 and
    # reject these. We accept them, as we must accept 357; the test checks they are identical.
    367: ("invalidBase64Padding: identical to tcId 357 (valid), no padding left in it", None),
    370: ("invalidBase64PaddingInPayload: identical to tcId 357 (valid)", None),
}
IDENTICAL_TO = {367: 357, 370: 357}


def _load() -> dict[str, Any] | None:
    path = SHARED.joinpath(*VECTORS)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "case"


def _cases(data: dict[str, Any] | None) -> list[Any]:
    if data is None:  # the test itself calls shared_path, which skips (or fails in CI)
        return [pytest.param({}, {}, id="vectors-missing")]
    cases = []
    for group in data["testGroups"]:
        for case in group["tests"]:
            cases.append(pytest.param(group, case, id=f"tc{case['tcId']}-{_slug(case['comment'])}"))
    return cases


DATA = _load()
TOKENS_BY_TCID = (
    {case["tcId"]: case["jws"] for group in DATA["testGroups"] for case in group["tests"]}
    if DATA
    else {}
)


def _verify(group: dict[str, Any], token: str) -> VerificationKey:
    key = key_from_jwk(group.get("public", group["private"]), allow_secret=True)
    _jws, used = verify_compact(token, lambda _kid: key)
    return used


def _header_alg(token: str) -> str | None:
    try:
        header = json.loads(b64url_decode(token.split(".", maxsplit=1)[0]))
    except (ValueError, IndexError):
        return None
    alg = header.get("alg") if isinstance(header, dict) else None
    return alg if isinstance(alg, str) else None


@pytest.mark.parametrize(("group", "case"), _cases(DATA))
def test_json_web_signature_vector(group: dict[str, Any], case: dict[str, Any]) -> None:
    shared_path(*VECTORS)
    tc_id, token = case["tcId"], case["jws"]
    if tc_id in DOCUMENTED_EXCEPTIONS:
        _reason, error = DOCUMENTED_EXCEPTIONS[tc_id]
        if tc_id in IDENTICAL_TO:
            assert token == TOKENS_BY_TCID[IDENTICAL_TO[tc_id]]
        if error is None:
            assert _verify(group, token).alg.name == _header_alg(token)
        else:
            with pytest.raises(JoseError, match=re.escape(error)):
                _verify(group, token)
        return
    if case["result"] == "valid" and _header_alg(token) in ALGORITHMS:
        assert _verify(group, token).alg.name == _header_alg(token)
    else:
        assert case["result"] == "invalid" or _header_alg(token) not in ALGORITHMS
        with pytest.raises(JoseError):
            _verify(group, token)


def test_every_documented_exception_is_in_the_file() -> None:
    shared_path(*VECTORS)
    assert set(DOCUMENTED_EXCEPTIONS) <= set(TOKENS_BY_TCID)
    assert len(TOKENS_BY_TCID) == 401
