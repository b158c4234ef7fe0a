"""JAR (RFC 9101): request objects verified with the client's registered keys only; every
claim rule refused one by one; the object's parameters (and only those) come out."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import httpx
import pytest
from jwcrypto import jwk

from tests.conftest import FrozenClock
from tests.oauth.jar_setup import claims_for, new_key, public_jwks, request_object
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import InvalidRequestObject
from tokenward.oauth.request_object import RequestObjects
from tokenward.store.memory import MemoryReplayCache

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"
KEY = new_key(kid="k1")


def client(**changes: object) -> ClientRecord:
    record = ClientRecord(
        client_id="app",
        auth_method="client_secret_basic",
        grant_types=("authorization_code",),
        scopes=frozenset({"openid", "read"}),
        created_at=0.0,
        redirect_uris=("https://app.example/cb",),
        jwks=public_jwks(KEY),
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def objects(clock: FrozenClock, keys: ClientKeys | None = None) -> RequestObjects:
    return RequestObjects(keys or ClientKeys(), MemoryReplayCache(clock), ISSUER, 30.0, clock)


def good(clock: FrozenClock, **overrides: object) -> dict[str, object]:
    return {
        **claims_for(
            "app",
            ISSUER,
            clock(),
            response_type="code",
            scope="openid read",
            redirect_uri="https://app.example/cb",
            max_age=300,
            resource=["https://a.example", "https://b.example"],
        ),
        **overrides,
    }


async def test_a_good_object_gives_its_parameters_and_only_those(clock: FrozenClock) -> None:
    pairs = await objects(clock).verify(client(), request_object(KEY, good(clock)))

    assert pairs == [
        ("client_id", "app"),
        ("response_type", "code"),
        ("scope", "openid read"),
        ("redirect_uri", "https://app.example/cb"),
        ("max_age", "300"),
        ("resource", "https://a.example"),
        ("resource", "https://b.example"),
    ]


async def test_rsa_pss_and_audience_as_array(clock: FrozenClock) -> None:
    rsa = new_key("RSA", kid="r1", alg="PS256")
    claims = good(clock, aud=[ISSUER, "https://other.example"])

    pairs = await objects(clock).verify(client(jwks=public_jwks(rsa)), request_object(rsa, claims))

    assert ("scope", "openid read") in pairs


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "https://other.example"}, "aud"),
        ({"aud": ISSUER + "/token"}, "aud"),
        ({"iss": "someone-else"}, "iss"),
        ({"client_id": "someone-else"}, "client_id"),
        ({"exp": None}, "exp"),
        ({"exp": "soon"}, "exp"),
        ({"exp": True}, "exp"),
        ({"exp": 1_800_000_000 - 31}, "exp"),  # expired beyond the leeway
        ({"exp": 1_800_000_000 + 3601}, "exp"),  # lives too long
        ({"nbf": 1_800_000_000 + 31}, "nbf"),  # not valid yet
        ({"nbf": 1_800_000_000 - 3601}, "nbf"),  # too old
        ({"jti": None}, "jti"),
        ({"jti": ""}, "jti"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, "request or request_uri"),
        ({"request": "a.b.c"}, "request or request_uri"),
    ],
)
async def test_claims_are_checked(
    clock: FrozenClock, change: dict[str, object], reason: str
) -> None:
    claims = {k: v for k, v in {**good(clock), **change}.items() if v is not None}
    with pytest.raises(InvalidRequestObject, match=reason):
        await objects(clock).verify(client(), request_object(KEY, claims))


async def test_a_replayed_object_is_refused(clock: FrozenClock) -> None:
    verifier = objects(clock)
    token = request_object(KEY, good(clock))
    await verifier.verify(client(), token)

    with pytest.raises(InvalidRequestObject, match="already used"):
        await verifier.verify(client(), token)


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt"])
async def test_typ_must_say_request_object(clock: FrozenClock, typ: str | None) -> None:
    with pytest.raises(InvalidRequestObject, match="typ"):
        await objects(clock).verify(client(), request_object(KEY, good(clock), typ=typ))


async def test_media_type_form_of_typ_is_accepted(clock: FrozenClock) -> None:
    token = request_object(KEY, good(clock), typ="application/oauth-authz-req+jwt")
    assert await objects(clock).verify(client(), token)


def _unsigned(claims: dict[str, object]) -> str:
    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'oauth-authz-req+jwt'})}.{segment(claims)}."


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_unsigned, id="alg-none"),
        pytest.param(lambda c: request_object(new_key(kid="k1"), c), id="another-key-same-kid"),
        pytest.param(lambda c: request_object(KEY, c, alg="ES384"), id="alg-not-the-keys"),
        pytest.param(lambda c: request_object(KEY, c, kid="unknown"), id="unknown-kid"),
        pytest.param(lambda c: request_object(KEY, c) + "x", id="tampered"),
        pytest.param(lambda c: "a.b.c.d.e", id="encrypted-form"),
    ],
)
async def test_only_the_clients_own_key_in_its_algorithm_verifies(
    clock: FrozenClock, forge: object
) -> None:
    token = forge(good(clock))  # type: ignore[operator]
    with pytest.raises(InvalidRequestObject, match="does not verify"):
        await objects(clock).verify(client(), token)


async def test_a_client_without_keys_cannot_sign(clock: FrozenClock) -> None:
    with pytest.raises(InvalidRequestObject, match="no registered keys"):
        await objects(clock).verify(client(jwks=None), request_object(KEY, good(clock)))


async def test_jwks_uri_keys_follow_rotation_and_a_published_secret_key_proves_nothing(
    clock: FrozenClock,
) -> None:
    rotated = new_key(kid="k2")
    published = {"keys": [KEY.export_public(as_dict=True)]}
    fetched: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json=published)

    verifier = objects(clock, ClientKeys(httpx.MockTransport(serve), clock=clock))
    remote = client(jwks=None, jwks_uri="https://app.example/jwks.json")

    await verifier.verify(remote, request_object(KEY, good(clock)))
    await verifier.verify(remote, request_object(KEY, good(clock)))
    assert len(fetched) == 1  # cached
    clock.advance(31)  # past the refetch interval: an unknown kid fetches again
    published["keys"].append(rotated.export_public(as_dict=True))
    await verifier.verify(remote, request_object(rotated, good(clock)))
    assert len(fetched) == 2

    secret = {"kty": "oct", "kid": "hs", "alg": "HS256", "k": "eHh4" * 10 + "eHg"}  # 256 bits
    published["keys"].append(secret)
    clock.advance(31)
    with pytest.raises(InvalidRequestObject, match="does not verify"):
        await verifier.verify(remote, request_object(jwk.JWK(**secret), good(clock)))


async def test_real_time_defaults(clock: FrozenClock) -> None:
    """The claims helper and the verifier agree on real time too (no frozen clock)."""
    verifier = RequestObjects(ClientKeys(), MemoryReplayCache(time.time), ISSUER)
    token = request_object(KEY, good(time.time))  # type: ignore[arg-type]
    assert await verifier.verify(client(), token)
