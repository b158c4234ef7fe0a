"""Properties of the validator and the compact parser over generated input (hypothesis).

Whatever arrives, `Validator.authenticate_sync` either returns a token that really is valid or
raises a `BearerError` subclass; `parse_compact` raises only `JoseError`. Nothing else escapes:
an unexpected exception would become a 500 and a log line instead of a 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.core.errors import JoseError
from tokenward.guard import (
    AccessToken,
    BearerError,
    InvalidRequest,
    InvalidToken,
    KeyringKeySource,
    RevocationMirror,
    Validator,
)
from tokenward.tokens.b64 import b64url_encode
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jws import parse_compact, sign_compact
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import KeyPolicy, Keyring

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MISSING = object()  # a member to remove


@dataclass(frozen=True)
class Env:
    validator: Validator
    keyring: Keyring
    clock: FrozenClock
    token: str


@pytest.fixture(scope="module")
def env() -> Env:
    """One keyring and validator for a module; the clock never moves, so examples stay alike."""
    clock = FrozenClock()
    keyring = Keyring(KeyPolicy(), clock)
    keyring.ensure_ready()
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=RevocationMirror(),
        clock=clock,
        leeway=30,
    )
    strategy = JwtAccessTokenStrategy(keyring, ISSUER, clock=clock)
    grant = TokenGrant("alice", "client-1", (AUDIENCE,), frozenset({"read"}))
    return Env(validator, keyring, clock, strategy.mint_sync(grant).value)


def outcome(validator: Validator, authorization: str) -> AccessToken | BearerError:
    """The token, or the BearerError raised; any other exception propagates and fails."""
    try:
        return validator.authenticate_sync(authorization)
    except BearerError as error:
        return error


# --- strategies ---------------------------------------------------------------------------
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def mutated(
    valid: dict[str, Any], names: list[str], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """`valid` itself half of the time, else with one or two members changed or removed."""
    change = st.tuples(st.sampled_from(names), values | JSON_VALUES | st.just(MISSING))
    return st.booleans().flatmap(
        lambda touch: (
            st.lists(change, min_size=1, max_size=2).map(
                lambda changes: {
                    name: value
                    for name, value in (valid | dict(changes)).items()
                    if value is not MISSING
                }
            )
            if touch
            else st.just(valid)
        )
    )


def headers(kid: str) -> st.SearchStrategy[dict[str, Any]]:
    valid = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    plausible = st.sampled_from(
        ["ES256", "HS256", "none", "AT+JWT", "application/at+jwt", "JWT", kid, "x", ["exp"]]
    )
    names = ["alg", "kid", "typ", "crit", "jwk", "jku", "cty", "x"]
    return mutated(valid, names, plausible)


def claim_sets(now: int) -> st.SearchStrategy[dict[str, Any]]:
    valid = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "j-1",
        "client_id": "client-1",
        "scope": "read",
    }
    plausible = (
        st.integers(now - 2000, now + 2000)
        | st.sampled_from([ISSUER, AUDIENCE, [AUDIENCE, "x"], "", "other", now + 0.5])
        | st.text(max_size=12)
    )
    names = [*valid, "cnf", "sid", "auth_time", "acr", "x"]
    return mutated(valid, names, plausible)


# --- properties ---------------------------------------------------------------------------
@PROPERTY
@given(text=st.text(max_size=400))
def test_arbitrary_text_raises_only_bearer_errors(env: Env, text: str) -> None:
    for authorization in ("Bearer " + text, text):
        result = outcome(env.validator, authorization)
        assert isinstance(result, BearerError)


@PROPERTY
@given(text=st.text(alphabet=B64URL + ".=+/ \t", max_size=400))
def test_token_alphabet_text_raises_only_bearer_errors(env: Env, text: str) -> None:
    assert isinstance(outcome(env.validator, "Bearer " + text), BearerError)


@PROPERTY
@given(parts=st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_base64url_segments_raise_only_bearer_errors(env: Env, parts: list[bytes]) -> None:
    token = ".".join(b64url_encode(part) for part in parts)
    assert isinstance(outcome(env.validator, "Bearer " + token), BearerError)
    with pytest.raises(JoseError):
        parse_compact(token)


@PROPERTY
@given(data=st.data())
def test_signed_arbitrary_json_is_accepted_only_when_valid(env: Env, data: st.DataObject) -> None:
    key = env.keyring.active()
    now = int(env.clock())
    header = data.draw(headers(key.kid), label="header")
    claims = data.draw(
        st.integers(0, 3).flatmap(lambda pick: claim_sets(now) if pick else JSON_VALUES),
        label="payload",
    )
    payload = json.dumps(claims).encode()
    token = sign_compact(header, payload, key.sign)
    result = outcome(env.validator, "Bearer " + token)
    event("accepted" if isinstance(result, AccessToken) else type(result).__name__)
    if isinstance(result, BearerError):
        assert isinstance(result, InvalidToken)
        return
    # Accepted: every checklist item must really hold for what was signed.
    assert isinstance(claims, dict)
    assert header["alg"] == "ES256"
    assert header["kid"] == key.kid
    assert header["typ"].lower() in {"at+jwt", "application/at+jwt"}
    assert "crit" not in header
    assert "jwk" not in header
    assert "jku" not in header
    assert claims["iss"] == ISSUER == result.iss
    audience = claims["aud"]
    assert result.aud == ((audience,) if isinstance(audience, str) else tuple(audience))
    assert AUDIENCE in result.aud
    assert result.sub == claims["sub"]
    assert result.jti == claims["jti"]
    assert type(claims["exp"]) is int
    assert now < claims["exp"] + 30
    assert type(claims["iat"]) is int
    assert claims["iat"] <= now + 30
    assert claims.get("nbf") is None or claims["nbf"] <= now + 30


@PROPERTY
@given(text=st.text(max_size=400))
def test_parse_compact_raises_only_jose_errors(text: str) -> None:
    try:
        parsed = parse_compact(text)
    except JoseError:
        return
    assert text.count(".") == 2
    assert isinstance(parsed.header, dict)


@PROPERTY
@given(header=JSON_VALUES, payload=st.binary(max_size=100), signature=st.binary(max_size=80))
def test_parse_compact_over_any_json_header(header: Any, payload: bytes, signature: bytes) -> None:
    token = ".".join(
        [
            b64url_encode(json.dumps(header).encode()),
            b64url_encode(payload),
            b64url_encode(signature),
        ]
    )
    try:
        parsed = parse_compact(token)
    except JoseError:
        return
    assert parsed.header == header
    assert parsed.signature == signature


@PROPERTY
@given(data=st.data())
def test_any_single_character_change_is_rejected(env: Env, data: st.DataObject) -> None:
    token = env.token
    assert isinstance(outcome(env.validator, "Bearer " + token), AccessToken)
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    replacement = data.draw(
        st.sampled_from(B64URL + ".=+/ ") | st.characters(), label="replacement"
    )
    if replacement == token[index]:
        return
    changed = token[:index] + replacement + token[index + 1 :]
    result = outcome(env.validator, "Bearer " + changed)
    assert isinstance(result, InvalidToken | InvalidRequest), (index, replacement)
