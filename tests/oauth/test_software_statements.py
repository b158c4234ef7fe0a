"""Software statements (RFC 7591 §2.3), signed by jwcrypto (a third party): accepted only from a
configured issuer, with its key in its pinned algorithm, unexpired; their JWT claims dropped."""

from __future__ import annotations

import json
import time

import pytest
from jwcrypto import jwk

from tests.oauth.jar_setup import new_key, public_jwks, request_object
from tokenward.oauth.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement
from tokenward.oauth.software_statements import (
    MAX_STATEMENT_LENGTH,
    SoftwareStatements,
    StatementIssuer,
)
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks

pytestmark = pytest.mark.anyio
ISSUER = "https://apps.example"
NOW = 1_800_000_000.0


class StaticKeys:
    """A fixed key set: refresh finds nothing new (as a JWKS that did not change)."""

    def __init__(self, *keys: jwk.JWK) -> None:
        self._keys = key_set_from_jwks(json.loads(public_jwks(*keys)))
        self.refreshes = 0

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    async def refresh(self, *, unknown_kid: bool) -> bool:
        self.refreshes += unknown_kid
        return False


KEY = new_key(kid="apps-1")
STATEMENTS = SoftwareStatements(
    [StatementIssuer(ISSUER, StaticKeys(KEY), "ES256")], leeway=30, clock=lambda: NOW
)


def statement(key: jwk.JWK = KEY, **claims: object) -> str:
    body = {"iss": ISSUER, "iat": int(NOW), "exp": int(NOW) + 600, **claims}
    return request_object(key, body, typ=None)


async def test_claims_are_the_metadata_without_the_jwt_claims() -> None:
    signed = statement(client_name="App", software_id="4NRB1-0XZABZI9E6-5SM3R", jti="j", aud="x")

    metadata = await STATEMENTS.metadata(signed)

    assert metadata == {"client_name": "App", "software_id": "4NRB1-0XZABZI9E6-5SM3R"}


@pytest.mark.parametrize(
    ("signed", "refusal"),
    [
        (statement(iss="https://other.example"), UnapprovedSoftwareStatement),
        (statement(new_key(kid="apps-1")), InvalidSoftwareStatement),  # same kid, other key
        (statement(new_key(kid="apps-9")), InvalidSoftwareStatement),  # unknown kid
        (statement(exp=int(NOW)), InvalidSoftwareStatement),
        (statement(exp="tomorrow"), InvalidSoftwareStatement),
        (statement(iat=int(NOW) + 120), InvalidSoftwareStatement),
        ("not-a-jwt", InvalidSoftwareStatement),
        ("a" * (MAX_STATEMENT_LENGTH + 1), InvalidSoftwareStatement),
        (42, InvalidSoftwareStatement),
    ],
)
async def test_refusals(signed: object, refusal: type[Exception]) -> None:
    with pytest.raises(refusal):
        await STATEMENTS.metadata(signed)


async def test_the_algorithm_is_pinned_per_issuer() -> None:
    rsa = new_key(kty="RSA", kid="apps-rsa", alg="PS256")
    pinned = SoftwareStatements([StatementIssuer(ISSUER, StaticKeys(KEY, rsa), "ES256")])

    with pytest.raises(InvalidSoftwareStatement, match="algorithm"):
        await pinned.metadata(statement(rsa, exp=int(time.time()) + 60))


async def test_an_unknown_kid_asks_for_fresh_keys_once() -> None:
    keys = StaticKeys(KEY)
    statements = SoftwareStatements([StatementIssuer(ISSUER, keys, "ES256")], clock=lambda: NOW)

    with pytest.raises(InvalidSoftwareStatement, match="no key"):
        await statements.metadata(statement(new_key(kid="apps-2")))
    assert keys.refreshes == 1
