"""Refusal cases every integration must answer identically, and the checks on each answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import Validator
from tokenward.tokens.jws import parse_compact, payload_object

REALM = "test-api"
REQUIRED = "read"  # every integration protects /items with this scope
EXPIRED = "the access token expired"
WRONG_AUDIENCE = "the access token is not for this audience"
TAMPERED = "signature does not verify"
REVOKED = "the access token was revoked"
MALFORMED = "the access token is malformed"
SCHEME_ONLY = "the Bearer scheme needs a token"
DPOP_NOT_ACCEPTED = "the DPoP scheme is not accepted here"
BOUND_AS_BEARER = "a DPoP-bound token must be sent with the DPoP scheme"
LACKS_SCOPE = "the access token lacks a required scope"
IN_URL = "access tokens in the URL are not accepted; send an Authorization header"
TWO_HEADERS = "more than one Authorization header"


@dataclass(frozen=True)
class Refusal:
    """What the client must see: status, the exact WWW-Authenticate value and JSON body."""

    status: int
    www_authenticate: str
    body: dict[str, str]


def invalid_token(description: str) -> Refusal:
    return Refusal(
        401,
        f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"',
        {"error": "invalid_token", "error_description": description},
    )


def invalid_request(description: str) -> Refusal:
    return Refusal(
        400,
        f'Bearer realm="{REALM}", error="invalid_request", error_description="{description}"',
        {"error": "invalid_request", "error_description": description},
    )


MISSING = Refusal(
    401,
    f'Bearer realm="{REALM}"',  # RFC 6750 §3.1: no error code when no credentials were sent
    {"error": "unauthorized", "error_description": "no bearer token"},
)


def insufficient_scope(scope: str) -> Refusal:
    return Refusal(
        403,
        f'Bearer realm="{REALM}", error="insufficient_scope", '
        f'error_description="{LACKS_SCOPE}", scope="{scope}"',
        {"error": "insufficient_scope", "error_description": LACKS_SCOPE, "scope": scope},
    )


@dataclass(frozen=True)
class Case:
    """One request to /items: its headers, its query string, and the credential it carries."""

    headers: list[tuple[str, str]]
    expected: Refusal
    secrets: tuple[str, ...] = ()
    query: str = ""
    revoke: str | None = None  # a token to revoke before the request

    @property
    def target(self) -> str:
        return "/items?" + self.query if self.query else "/items"


def tamper(token: str) -> str:
    """Change one payload character that carries no padding bits, so it still decodes."""
    header, payload, signature = token.split(".")
    middle = len(payload) // 2
    flipped = "A" if payload[middle] != "A" else "B"
    return f"{header}.{payload[:middle]}{flipped}{payload[middle + 1 :]}.{signature}"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", "Bearer " + token)]


Mint = Callable[..., str]


def revoke(validator: Validator, token: str) -> None:
    """Revoke a token in the validator's mirror, as the revocation feed would."""
    jti = payload_object(parse_compact(token))["jti"]
    validator.revocations.apply(Revocation(RevocationKind.JTI, jti, None, 2_000_000_000.0))


def _missing(mint: Mint, clock: FrozenClock, good: str) -> Case:
    return Case([], MISSING)


def _expired(mint: Mint, clock: FrozenClock, good: str) -> Case:
    clock.advance(900 + 31)  # lifetime plus the validator's 30 s leeway, and one more
    return Case(bearer(good), invalid_token(EXPIRED), (good,))


def _wrong_audience(mint: Mint, clock: FrozenClock, good: str) -> Case:
    other = mint(audience=("https://other.example",))
    return Case(bearer(other), invalid_token(WRONG_AUDIENCE), (other,))


def _tampered(mint: Mint, clock: FrozenClock, good: str) -> Case:
    bad = tamper(good)
    return Case(bearer(bad), invalid_token(TAMPERED), (bad, good))


def _under_scoped(mint: Mint, clock: FrozenClock, good: str) -> Case:
    narrow = mint(scopes=("profile",))
    return Case(bearer(narrow), insufficient_scope(REQUIRED), (narrow,))


def _token_in_query(mint: Mint, clock: FrozenClock, good: str) -> Case:
    # Refused even beside a good header: the client must learn that its URL leaks the token.
    return Case(bearer(good), invalid_request(IN_URL), (good,), query=f"access_token={good}")


def _token_in_query_encoded(mint: Mint, clock: FrozenClock, good: str) -> Case:
    return Case([], invalid_request(IN_URL), (good,), query=f"page=2&access%5Ftoken={good}")


def _two_headers(mint: Mint, clock: FrozenClock, good: str) -> Case:
    other = mint()
    headers = [("authorization", "Bearer " + good), ("authorization", "Bearer " + other)]
    return Case(headers, invalid_request(TWO_HEADERS), (good, other))


def _revoked(mint: Mint, clock: FrozenClock, good: str) -> Case:
    token = mint(scopes=("read",))
    return Case(bearer(token), invalid_token(REVOKED), (token,), revoke=token)


def _scheme_only(mint: Mint, clock: FrozenClock, good: str) -> Case:
    return Case([("authorization", "Bearer")], invalid_request(SCHEME_ONLY))


def _malformed(mint: Mint, clock: FrozenClock, good: str) -> Case:
    return Case(bearer("not-a-jwt"), invalid_token(MALFORMED), ("not-a-jwt",))


def _dpop_scheme(mint: Mint, clock: FrozenClock, good: str) -> Case:
    return Case([("authorization", "DPoP " + good)], invalid_request(DPOP_NOT_ACCEPTED), (good,))


def _bound_as_bearer(mint: Mint, clock: FrozenClock, good: str) -> Case:
    bound = mint(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    return Case(bearer(bound), invalid_token(BOUND_AS_BEARER), (bound,))


REFUSALS: dict[str, Callable[[Mint, FrozenClock, str], Case]] = {
    "missing": _missing,
    "expired": _expired,
    "wrong_audience": _wrong_audience,
    "tampered": _tampered,
    "under_scoped": _under_scoped,
    "token_in_query": _token_in_query,
    "token_in_query_percent_encoded": _token_in_query_encoded,
    "two_headers": _two_headers,
    "revoked": _revoked,
    "scheme_only": _scheme_only,
    "malformed": _malformed,
    "dpop_scheme_without_verifier": _dpop_scheme,
    "dpop_bound_as_bearer": _bound_as_bearer,
}


@pytest.fixture(params=sorted(REFUSALS))
def refusal(
    request: pytest.FixtureRequest, mint: Mint, clock: FrozenClock, validator: Validator
) -> Case:
    """Each way a request to /items must be refused, built from real signed tokens."""
    good = mint(scopes=("read", "write"))
    case = REFUSALS[request.param](mint, clock, good)
    if case.revoke is not None:
        revoke(validator, case.revoke)
    return case


def assert_refused(
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    expected: Refusal,
    secrets: Iterable[str] = (),
) -> None:
    """Status, challenge and body exactly; no-store; and no credential echoed anywhere."""
    pairs = [(name.lower(), value) for name, value in headers]
    assert status == expected.status
    assert [value for name, value in pairs if name == "www-authenticate"] == [
        expected.www_authenticate
    ]
    assert [value for name, value in pairs if name == "cache-control"] == ["no-store"]
    assert [value for name, value in pairs if name == "content-type"] == ["application/json"]
    assert json.loads(body) == expected.body
    assert_no_leak(pairs, body, secrets)


def assert_no_leak(headers: Iterable[tuple[str, str]], body: bytes, secrets: Iterable[str]) -> None:
    text = body.decode("latin-1")
    for secret in secrets:
        # The signature alone is what would let someone replay or recognise the token.
        for fragment in (secret, secret.rsplit(".", 1)[-1]):
            assert fragment not in text
            for _, value in headers:
                assert fragment not in value
