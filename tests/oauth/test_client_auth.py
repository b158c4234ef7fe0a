"""Client authentication methods (RFC 6749 §2.3, RFC 7523, OIDC Core §9)."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from urllib.parse import quote

import httpx
import orjson
import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_auth import (
    ASSERTION_TYPE,
    ClientAuthenticator,
    SecretHasher,
    presented_credentials,
)
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import InvalidClient, InvalidRequest
from tokenward.store.memory import MemoryClientStore, MemoryReplayCache
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import KeyPolicy, Keyring

ISSUER = "https://as.example"
SECRET = "s3cr3t:with/odd%chars+and spaces é"


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-urlencode id and secret, then Basic
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def hasher() -> SecretHasher:
    return SecretHasher(b"k" * 32)


@pytest.fixture
def store() -> MemoryClientStore:
    return MemoryClientStore()


@pytest.fixture
def authenticator(
    store: MemoryClientStore, hasher: SecretHasher, clock: FrozenClock
) -> ClientAuthenticator:
    return ClientAuthenticator(
        store, hasher, MemoryReplayCache(clock), frozenset({ISSUER, ISSUER + "/token"}), clock
    )


async def register(
    store: MemoryClientStore,
    hasher: SecretHasher,
    method: str,
    client_id: str = "app:1",
    jwks: str | None = None,
) -> ClientRecord:
    client = ClientRecord(
        client_id=client_id,
        auth_method=method,
        grant_types=("client_credentials",),
        scopes=frozenset({"read"}),
        created_at=time.time(),
        secret_digest=hasher.digest(SECRET) if "secret" in method else None,
        jwks=jwks,
    )
    await store.put(client)
    return client


@pytest.mark.anyio
async def test_basic_credentials_are_url_decoded(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    await register(store, hasher, "client_secret_basic")
    client = await authenticator.authenticate({}, basic("app:1", SECRET))
    assert client.client_id == "app:1"


@pytest.mark.anyio
async def test_wrong_secret_is_invalid_client_with_basic_challenge(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    await register(store, hasher, "client_secret_basic")
    with pytest.raises(InvalidClient) as caught:
        await authenticator.authenticate({}, basic("app:1", "wrong"))
    assert caught.value.status == 401
    assert caught.value.headers["www-authenticate"].startswith("Basic")


@pytest.mark.anyio
async def test_post_credentials(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    await register(store, hasher, "client_secret_post")
    client = await authenticator.authenticate({"client_id": "app:1", "client_secret": SECRET}, None)
    assert client.auth_method == "client_secret_post"


@pytest.mark.anyio
async def test_method_must_be_the_registered_one(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    await register(store, hasher, "client_secret_basic")
    with pytest.raises(InvalidClient):
        await authenticator.authenticate({"client_id": "app:1", "client_secret": SECRET}, None)


def test_two_methods_at_once_refused() -> None:
    with pytest.raises(InvalidRequest, match="exactly one"):
        presented_credentials({"client_secret": "x"}, basic("a", "b"))


@pytest.mark.anyio
async def test_unknown_and_disabled_clients_answer_alike(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    from dataclasses import replace

    client = await register(store, hasher, "client_secret_basic")
    await store.put(replace(client, disabled=True))
    messages = []
    for client_id in ("app:1", "nobody"):
        with pytest.raises(InvalidClient) as caught:
            await authenticator.authenticate({}, basic(client_id, SECRET))
        messages.append(caught.value.description)
    assert messages[0] == messages[1]


@pytest.mark.anyio
async def test_public_client_authenticates_with_id_only(
    authenticator: ClientAuthenticator, store: MemoryClientStore, hasher: SecretHasher
) -> None:
    await register(store, hasher, "none", client_id="spa")
    assert (await authenticator.authenticate({"client_id": "spa"}, None)).client_id == "spa"


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()])
def test_malformed_basic_is_invalid_client(header: str) -> None:
    with pytest.raises(InvalidClient):
        presented_credentials({}, header)


def _assertion(keyring: Keyring, clock: FrozenClock, **overrides: object) -> str:
    key = keyring.active()
    claims = {
        "iss": "app:1",
        "sub": "app:1",
        "aud": ISSUER + "/token",
        "jti": "j-1",
        "exp": int(clock()) + 60,
        "iat": int(clock()),
    }
    claims.update(overrides)
    return sign_compact({"alg": key.alg.name, "kid": key.kid}, orjson.dumps(claims), key.sign)


@pytest.mark.anyio
async def test_private_key_jwt_once_only(
    authenticator: ClientAuthenticator,
    store: MemoryClientStore,
    hasher: SecretHasher,
    clock: FrozenClock,
) -> None:
    keyring = Keyring(KeyPolicy(), clock)
    keyring.ensure_ready()
    await register(store, hasher, "private_key_jwt", jwks=orjson.dumps(keyring.jwks()).decode())
    params = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(keyring, clock),
    }
    assert (await authenticator.authenticate(params, None)).client_id == "app:1"
    with pytest.raises(InvalidClient, match="already used"):
        await authenticator.authenticate(params, None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://elsewhere.example"},
        {"iss": "someone-else"},
        {"exp": 1},
        {"exp": 1_800_000_000 + 7200},
        {"jti": 7},
    ],
)
async def test_private_key_jwt_claims_checked(
    authenticator: ClientAuthenticator,
    store: MemoryClientStore,
    hasher: SecretHasher,
    clock: FrozenClock,
    overrides: dict[str, object],
) -> None:
    keyring = Keyring(KeyPolicy(), clock)
    keyring.ensure_ready()
    await register(store, hasher, "private_key_jwt", jwks=orjson.dumps(keyring.jwks()).decode())
    params = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(keyring, clock, **overrides),
    }
    with pytest.raises(InvalidClient):
        await authenticator.authenticate(params, None)


@pytest.mark.anyio
async def test_private_key_jwt_signed_by_another_key_refused(
    authenticator: ClientAuthenticator,
    store: MemoryClientStore,
    hasher: SecretHasher,
    clock: FrozenClock,
) -> None:
    registered, attacker = Keyring(KeyPolicy(), clock), Keyring(KeyPolicy(), clock)
    registered.ensure_ready()
    attacker.ensure_ready()
    await register(store, hasher, "private_key_jwt", jwks=orjson.dumps(registered.jwks()).decode())
    params = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(attacker, clock),
    }
    with pytest.raises(InvalidClient):
        await authenticator.authenticate(params, None)


@pytest.mark.anyio
async def test_private_key_jwt_keys_from_the_clients_jwks_uri_follow_its_rotation(
    store: MemoryClientStore, hasher: SecretHasher, clock: FrozenClock
) -> None:
    published = Keyring(KeyPolicy(), clock)
    published.ensure_ready()
    fetched: list[str] = []

    def serve_jwks(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json=published.jwks())

    authenticator = ClientAuthenticator(
        store,
        hasher,
        MemoryReplayCache(clock),
        frozenset({ISSUER + "/token"}),
        clock,
        keys=ClientKeys(httpx.MockTransport(serve_jwks), clock=clock),
    )
    await store.put(
        replace(
            await register(store, hasher, "private_key_jwt"),
            jwks_uri="https://app.example/jwks.json",
        )
    )

    def params(jti: str) -> dict[str, str]:
        assertion = _assertion(published, clock, jti=jti)
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    assert (await authenticator.authenticate(params("a"), None)).client_id == "app:1"
    assert (await authenticator.authenticate(params("b"), None)).client_id == "app:1"
    assert fetched == ["https://app.example/jwks.json"]  # cached
    clock.advance(31)  # past the refetch interval
    published.rotate(force=True)
    published.rotate(force=True)  # the client signs with a key the cache does not hold
    assert (await authenticator.authenticate(params("c"), None)).client_id == "app:1"
    assert len(fetched) == 2
