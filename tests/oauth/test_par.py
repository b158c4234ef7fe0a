"""PAR (RFC 9126) from push to /authorize: authenticated pushes checked in full, request_uri
used once, by its client, before it expires; DPoP at push (RFC 9449 §10.1); signed request
objects inside (RFC 9101); clients and servers that require either."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from tests.conftest import FrozenClock
from tests.oauth.jar_setup import claims_for, new_key, public_jwks, request_object
from tests.oauth.test_client_auth import basic
from tokenward.client.dpop import DpopKey
from tokenward.core.records import ClientRecord
from tokenward.oauth.authorize import AuthorizationValidator, ErrorPage, RedirectError
from tokenward.oauth.client_auth import ClientAuthenticator, SecretHasher
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import (
    DpopProofRefused,
    InvalidClient,
    InvalidRequest,
    InvalidRequestObject,
    OAuthError,
    UnsupportedResponseType,
)
from tokenward.oauth.par import PushedAuthorization, PushRequest
from tokenward.oauth.request_object import RequestObjects
from tokenward.oauth.request_uri import PREFIX, RequestUris
from tokenward.store.memory import MemoryClientStore, MemoryReplayCache
from tokenward.store.memory_flows import MemoryPushedRequestStore
from tokenward.tokens.dpop import DpopVerifier

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"
PAR_URL = ISSUER + "/par"
CALLBACK = "https://app.example/cb"
SECRET = "s" * 43
KEY = new_key(kid="jar-1")
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # a well-formed S256 challenge


@dataclass
class Setup:
    clients: MemoryClientStore
    validator: AuthorizationValidator
    par: PushedAuthorization
    clock: FrozenClock


def request_params(**changes: str) -> list[tuple[str, str]]:
    params = {
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid read",
        "state": "st-1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }
    return [(name, value) for name, value in params.items() if value]


def record(client_id: str = "app", **changes: object) -> ClientRecord:
    client = ClientRecord(
        client_id=client_id,
        auth_method="client_secret_basic",
        grant_types=("authorization_code",),
        scopes=frozenset({"openid", "read"}),
        created_at=0.0,
        secret_digest=SecretHasher(b"k" * 32).digest(SECRET),
        redirect_uris=(CALLBACK,),
        jwks=public_jwks(KEY),
    )
    return replace(client, **changes)  # type: ignore[arg-type]


async def setup(
    clock: FrozenClock, *, require_par: bool = False, require_signed: bool = False
) -> Setup:
    clients = MemoryClientStore()
    replay = MemoryReplayCache(clock)
    keys = ClientKeys()
    authenticator = ClientAuthenticator(
        clients, SecretHasher(b"k" * 32), replay, frozenset({ISSUER, PAR_URL}), clock, keys=keys
    )
    objects = RequestObjects(keys, replay, ISSUER, 30.0, clock)
    uris = RequestUris(MemoryPushedRequestStore(clock), 60, clock)
    validator = AuthorizationValidator(
        clients,
        ISSUER,
        ISSUER + "/api",
        uris=uris,
        request_objects=objects,
        require_par=require_par,
        require_signed=require_signed,
    )
    dpop = DpopVerifier(replay.first_use, None, clock)
    par = PushedAuthorization(authenticator, validator, objects, uris, dpop, PAR_URL)
    await clients.put(record())
    await clients.put(record("other"))
    return Setup(clients, validator, par, clock)


async def push(
    s: Setup, pairs: list[tuple[str, str]], client_id: str = "app", **extra: str | None
) -> str:
    body, headers = await s.par.push(
        PushRequest(pairs, authorization=basic(client_id, SECRET), dpop=extra.get("dpop"))
    )
    assert set(body) == {"request_uri", "expires_in"}
    assert body["expires_in"] == 60
    assert headers["cache-control"] == "no-store"
    uri = str(body["request_uri"])
    assert uri.startswith(PREFIX)
    assert len(uri) - len(PREFIX) >= 43  # 256 random bits
    return uri


async def test_a_pushed_request_is_what_authorize_uses_once(clock: FrozenClock) -> None:
    s = await setup(clock)
    uri = await push(s, request_params())

    # RFC 9126 §4: whatever else the link carries is ignored.
    request, client = await s.validator.validate(
        [("client_id", "app"), ("request_uri", uri), ("scope", "read"), ("state", "other")]
    )

    assert client.client_id == "app"
    assert request.scopes == ("openid", "read")
    assert request.state == "st-1"
    assert request.redirect_uri == CALLBACK
    assert request.code_challenge == CHALLENGE
    with pytest.raises(ErrorPage, match="already used"):
        await s.validator.validate([("client_id", "app"), ("request_uri", uri)])


async def test_another_client_cannot_use_it_and_it_stays_usable(clock: FrozenClock) -> None:
    s = await setup(clock)
    uri = await push(s, request_params())

    with pytest.raises(ErrorPage):
        await s.validator.validate([("client_id", "other"), ("request_uri", uri)])
    request, _client = await s.validator.validate([("client_id", "app"), ("request_uri", uri)])
    assert request.client_id == "app"


async def test_an_expired_request_uri_is_refused(clock: FrozenClock) -> None:
    s = await setup(clock)
    uri = await push(s, request_params())
    clock.advance(60)

    with pytest.raises(ErrorPage, match="expired"):
        await s.validator.validate([("client_id", "app"), ("request_uri", uri)])


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/request.jwt",  # we fetch nothing
        PREFIX + "made-up",
        PREFIX + "x" * 200,
    ],
)
async def test_request_uris_not_ours_are_refused(clock: FrozenClock, uri: str) -> None:
    s = await setup(clock)
    with pytest.raises(ErrorPage):
        await s.validator.validate([("client_id", "app"), ("request_uri", uri)])


@pytest.mark.parametrize(
    ("pairs", "error"),
    [
        (request_params(redirect_uri="https://evil.example/cb"), InvalidRequest),
        (request_params(response_type="token"), UnsupportedResponseType),
        (request_params(code_challenge=""), InvalidRequest),
        (
            [*request_params(), ("request_uri", PREFIX + "a" * 43)],
            InvalidRequest,
        ),
        ([*request_params(), ("scope", "again")], InvalidRequest),
    ],
)
async def test_the_push_is_checked_in_full_before_anything_is_stored(
    clock: FrozenClock, pairs: list[tuple[str, str]], error: type[OAuthError]
) -> None:
    s = await setup(clock)
    with pytest.raises(error):
        await push(s, pairs)


async def test_client_authentication_is_required(clock: FrozenClock) -> None:
    s = await setup(clock)
    with pytest.raises(InvalidClient):
        await s.par.push(PushRequest(request_params(), authorization=basic("app", "wrong" * 9)))
    with pytest.raises(InvalidClient):
        await s.par.push(PushRequest([("client_id", "app"), *request_params()]))


async def test_a_public_client_pushes_with_its_client_id(clock: FrozenClock) -> None:
    s = await setup(clock)
    await s.clients.put(record("spa", auth_method="none", secret_digest=None, jwks=None))
    body, _headers = await s.par.push(PushRequest([("client_id", "spa"), *request_params()]))
    request, _client = await s.validator.validate(
        [("client_id", "spa"), ("request_uri", str(body["request_uri"]))]
    )
    assert request.client_id == "spa"


async def test_a_dpop_proof_at_push_binds_the_code_to_its_key(clock: FrozenClock) -> None:
    s = await setup(clock)
    key = DpopKey(clock=clock)
    uri = await push(s, request_params(), dpop=key.proof("POST", PAR_URL))

    request, _client = await s.validator.validate([("client_id", "app"), ("request_uri", uri)])

    assert request.dpop_jkt == key.thumbprint


async def test_dpop_proof_and_dpop_jkt_must_agree(clock: FrozenClock) -> None:
    s = await setup(clock)
    key, other = DpopKey(clock=clock), DpopKey(clock=clock)
    agreeing = request_params(dpop_jkt=key.thumbprint)
    await push(s, agreeing, dpop=key.proof("POST", PAR_URL))
    with pytest.raises(InvalidRequest, match="dpop_jkt"):
        await push(s, request_params(dpop_jkt=other.thumbprint), dpop=key.proof("POST", PAR_URL))
    with pytest.raises(DpopProofRefused):
        await push(s, request_params(), dpop=key.proof("POST", ISSUER + "/token"))


async def test_a_signed_request_object_pushed_counts_alone(clock: FrozenClock) -> None:
    s = await setup(clock)
    claims = claims_for("app", ISSUER, clock(), **dict(request_params(scope="openid")))
    pairs = [("request", request_object(KEY, claims)), ("scope", "read"), ("state", "outer")]

    uri = await push(s, pairs)
    request, _client = await s.validator.validate([("client_id", "app"), ("request_uri", uri)])

    assert request.scopes == ("openid",)
    assert request.state == "st-1"


async def test_a_bad_request_object_at_push_is_refused(clock: FrozenClock) -> None:
    s = await setup(clock)
    claims = claims_for("app", "https://elsewhere.example", clock(), **dict(request_params()))
    with pytest.raises(InvalidRequestObject, match="aud"):
        await push(s, [("request", request_object(KEY, claims))])


async def test_signed_only_clients_cannot_push_plain_requests(clock: FrozenClock) -> None:
    s = await setup(clock)
    await s.clients.put(record(require_signed_request_object=True))
    with pytest.raises(InvalidRequest, match="signed request object"):
        await push(s, request_params())
    claims = claims_for("app", ISSUER, clock(), **dict(request_params()))
    await push(s, [("request", request_object(KEY, claims))])


@pytest.mark.parametrize("server_wide", [False, True])
async def test_par_only_refuses_the_front_channel_request(
    clock: FrozenClock, server_wide: bool
) -> None:
    s = await setup(clock, require_par=server_wide)
    if not server_wide:
        await s.clients.put(record(require_pushed_authorization_requests=True))

    with pytest.raises(RedirectError) as refused:
        await s.validator.validate([("client_id", "app"), *request_params()])

    assert refused.value.error.error == "invalid_request"
    assert refused.value.location.startswith(CALLBACK + "?error=invalid_request")
    uri = await push(s, request_params())
    assert (await s.validator.validate([("client_id", "app"), ("request_uri", uri)]))[0]


@pytest.mark.parametrize("server_wide", [False, True])
async def test_signed_only_at_authorize(clock: FrozenClock, server_wide: bool) -> None:
    s = await setup(clock, require_signed=server_wide)
    if not server_wide:
        await s.clients.put(record(require_signed_request_object=True))

    with pytest.raises(RedirectError, match="signed"):
        await s.validator.validate([("client_id", "app"), *request_params()])

    claims = claims_for("app", ISSUER, clock(), **dict(request_params(scope="openid")))
    # RFC 9101 §5: the object's parameters only; the link's scope and state do not count.
    request, _client = await s.validator.validate(
        [("client_id", "app"), ("request", request_object(KEY, claims)), ("scope", "read")]
    )
    assert request.scopes == ("openid",)


async def test_a_bad_request_object_at_authorize_goes_back_as_invalid_request_object(
    clock: FrozenClock,
) -> None:
    s = await setup(clock)
    claims = claims_for("app", ISSUER, clock() - 4000, **dict(request_params()))
    with pytest.raises(RedirectError) as refused:
        await s.validator.validate([("client_id", "app"), ("request", request_object(KEY, claims))])
    assert refused.value.error.error == "invalid_request_object"
