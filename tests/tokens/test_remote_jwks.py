"""RemoteJwks against a real HTTP server on loopback: uvicorn in a thread serving a keyring's JWKS.

RemoteJwks keeps its own (monotonic) clock; each test injects a FrozenClock for it, separate from
the wall clock tokens are minted and checked with, so cache ages move only when a test says so.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.guard import AccessToken, InvalidToken, RemoteJwks, RevocationMirror, Validator
from tokenward.tokens.b64 import b64url_decode
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring

MAX_AGE = 300.0
MIN_INTERVAL = 30.0
NO_KEY = "no key matches the token's kid"


class JwksEndpoint:
    """What /jwks answers, settable per test, and how often it was asked."""

    def __init__(self) -> None:
        self.url = ""
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.status = 200
        self.body = b'{"keys": []}'
        self.headers: dict[str, str] = {}

    def serve(self, document: object, *, cache_control: str | None = None) -> None:
        self.status, self.body = 200, json.dumps(document).encode()
        self.headers = {"cache-control": cache_control} if cache_control else {}

    async def handle(self, request: Request) -> Response:
        self.hits += 1
        return Response(self.body, self.status, self.headers, media_type="application/json")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def server() -> Iterator[JwksEndpoint]:
    endpoint = JwksEndpoint()
    app = Starlette(routes=[Route("/jwks", endpoint.handle)])
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
    )
    uvicorn_server = uvicorn.Server(config)
    sock = free_socket()
    endpoint.url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:  # a bounded wait for the server to listen
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    yield endpoint
    uvicorn_server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def jwks(server: JwksEndpoint, keyring: Keyring) -> JwksEndpoint:
    server.reset()
    server.serve(keyring.jwks())
    return server


@pytest.fixture
def mono() -> FrozenClock:
    return FrozenClock(1000.0)


def remote_validator(keys: RemoteJwks, clock: FrozenClock) -> Validator:
    return Validator(
        issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=RevocationMirror(), clock=clock
    )


@pytest.fixture
def remote(jwks: JwksEndpoint, mono: FrozenClock) -> RemoteJwks:
    return RemoteJwks(jwks.url, max_age=MAX_AGE, min_interval=MIN_INTERVAL, clock=mono)


@pytest.fixture
def validator(remote: RemoteJwks, clock: FrozenClock) -> Validator:
    return remote_validator(remote, clock)


def with_kid(token: str, kid: str, keyring: Keyring) -> str:
    """The same claims re-signed by the active key, but naming another kid."""
    key = keyring.active()
    header = {"alg": key.alg.name, "typ": "at+jwt", "kid": kid}
    return sign_compact(header, b64url_decode(token.split(".")[1]), key.sign)


def fresh(mint: Callable[..., str]) -> str:
    """A token the validator has not cached, so validating it consults the key source."""
    return "Bearer " + mint(subject=secrets.token_hex(4))


async def validate_all(
    validator: Validator, headers: list[str], path: str
) -> list[AccessToken | BaseException]:
    """Validate on the sync path (a Flask worker's), the async one, or all at once so that the
    requests race for the key source's fetch. Failures come back as the exceptions raised."""
    if path == "concurrent":
        return await asyncio.gather(
            *(validator.authenticate(header) for header in headers), return_exceptions=True
        )
    results: list[AccessToken | BaseException] = []
    for header in headers:
        try:
            if path == "sync":
                results.append(validator.authenticate_sync(header))
            else:
                results.append(await validator.authenticate(header))
        except InvalidToken as exc:
            results.append(exc)
    return results


def subjects(results: list[AccessToken | BaseException]) -> list[str]:
    return [result.sub if isinstance(result, AccessToken) else repr(result) for result in results]


PATHS = ["sync", "async", "concurrent"]


# --- fetching and rotation -----------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_cold_start_validates_with_one_fetch(
    validator: Validator, jwks: JwksEndpoint, mint: Callable[..., str], path: str
) -> None:
    names = [f"user{i}" for i in range(10)]
    results = await validate_all(validator, ["Bearer " + mint(subject=n) for n in names], path)
    assert subjects(results) == names
    assert jwks.hits == 1


@pytest.mark.anyio
async def test_rotation_to_the_published_next_key_needs_no_fetch(
    validator: Validator, jwks: JwksEndpoint, keyring: Keyring, mint: Callable[..., str]
) -> None:
    await validator.authenticate(fresh(mint))
    keyring.rotate(force=True)  # the new active key was published as `next` before it signs
    assert (await validator.authenticate(fresh(mint))).iss == ISSUER
    assert jwks.hits == 1


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_unknown_kid_triggers_exactly_one_refetch(
    validator: Validator,
    jwks: JwksEndpoint,
    keyring: Keyring,
    mint: Callable[..., str],
    mono: FrozenClock,
    path: str,
) -> None:
    await validator.authenticate(fresh(mint))
    keyring.rotate(force=True)
    keyring.rotate(force=True)  # now signing with a key that did not exist at the fetch
    jwks.serve(keyring.jwks())
    mono.advance(MIN_INTERVAL + 1)
    names = [f"user{i}" for i in range(5)]
    results = await validate_all(validator, ["Bearer " + mint(subject=n) for n in names], path)
    assert subjects(results) == names  # concurrent ones wait for the fetch under way
    assert jwks.hits == 2


@pytest.mark.anyio
async def test_unknown_kid_within_min_interval_does_not_fetch(
    validator: Validator, jwks: JwksEndpoint, keyring: Keyring, mint: Callable[..., str]
) -> None:
    await validator.authenticate(fresh(mint))
    stranger = "Bearer " + with_kid(mint(), "not-published", keyring)
    with pytest.raises(InvalidToken, match=NO_KEY):
        await validator.authenticate(stranger)
    assert jwks.hits == 1


# --- random kids must not turn us into a flood ---------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_flood_of_random_kids_costs_at_most_one_fetch(
    validator: Validator,
    jwks: JwksEndpoint,
    keyring: Keyring,
    mint: Callable[..., str],
    mono: FrozenClock,
    path: str,
) -> None:
    await validator.authenticate(fresh(mint))
    mono.advance(MIN_INTERVAL + 1)  # a refetch is allowed again, so one is spent on the flood
    base = mint()
    headers = ["Bearer " + with_kid(base, secrets.token_urlsafe(12), keyring) for _ in range(50)]
    results = await validate_all(validator, headers, path)
    assert all(isinstance(result, InvalidToken) for result in results)
    assert {str(result) for result in results} == {NO_KEY}
    assert jwks.hits == 2


# --- cache lifetime ------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        (None, MAX_AGE),
        ("public, max-age=60", 60.0),  # the server may shorten our cache
        ("max-age=86400", MAX_AGE),  # but never lengthen it past our own max_age
        ("max-age=5", MIN_INTERVAL),  # nor below min_interval
    ],
)
async def test_cache_expiry_triggers_a_refetch(
    validator: Validator,
    jwks: JwksEndpoint,
    keyring: Keyring,
    mint: Callable[..., str],
    mono: FrozenClock,
    cache_control: str | None,
    lifetime: float,
) -> None:
    jwks.serve(keyring.jwks(), cache_control=cache_control)
    await validator.authenticate(fresh(mint))
    mono.advance(lifetime - 1)
    await validator.authenticate(fresh(mint))
    assert jwks.hits == 1
    mono.advance(2)
    await validator.authenticate(fresh(mint))
    assert jwks.hits == 2


# --- failures keep what we had -------------------------------------------------------------
def duplicate_kid(keyring: Keyring) -> bytes:
    key = keyring.jwks()["keys"][0]
    return json.dumps({"keys": [key, key]}).encode()


BROKEN: dict[str, Callable[[Keyring], tuple[int, bytes]]] = {
    "server_error": lambda ring: (500, json.dumps(ring.jwks()).encode()),
    "not_json": lambda ring: (200, b"<html>maintenance</html>"),
    "not_a_key_set": lambda ring: (200, b'{"keys": {}}'),
    "duplicate_kid": lambda ring: (200, duplicate_kid(ring)),
    "too_large": lambda ring: (200, b'{"keys": [], "pad": "' + b"x" * 300_000 + b'"}'),
    "too_deep": lambda ring: (200, b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.anyio
@pytest.mark.parametrize("broken", sorted(BROKEN))
async def test_bad_answer_keeps_the_previous_keys(
    validator: Validator,
    jwks: JwksEndpoint,
    keyring: Keyring,
    mint: Callable[..., str],
    mono: FrozenClock,
    broken: str,
) -> None:
    await validator.authenticate(fresh(mint))
    jwks.status, jwks.body = BROKEN[broken](keyring)
    mono.advance(MAX_AGE + 1)
    assert (await validator.authenticate(fresh(mint))).iss == ISSUER
    assert jwks.hits == 2
    # A failed fetch is retried no more often than min_interval, and still keeps the keys.
    assert (await validator.authenticate(fresh(mint))).iss == ISSUER
    assert jwks.hits == 2
    mono.advance(MIN_INTERVAL + 1)
    assert validator.authenticate_sync(fresh(mint)).iss == ISSUER
    assert jwks.hits == 3


@pytest.mark.anyio
async def test_recovers_once_the_server_does(
    validator: Validator,
    jwks: JwksEndpoint,
    keyring: Keyring,
    mint: Callable[..., str],
    mono: FrozenClock,
) -> None:
    jwks.status = 503
    with pytest.raises(InvalidToken, match=NO_KEY):
        await validator.authenticate(fresh(mint))
    jwks.serve(keyring.jwks())
    mono.advance(MIN_INTERVAL + 1)
    assert (await validator.authenticate(fresh(mint))).iss == ISSUER
    assert jwks.hits == 2


@pytest.mark.anyio
async def test_unreachable_url_is_invalid_token(
    clock: FrozenClock, mono: FrozenClock, mint: Callable[..., str]
) -> None:
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"
    sock.close()  # nothing listens there now: connections are refused
    validator = remote_validator(RemoteJwks(url, timeout=2.0, clock=mono), clock)
    with pytest.raises(InvalidToken, match=NO_KEY):
        await validator.authenticate(fresh(mint))
    mono.advance(MIN_INTERVAL + 1)
    with pytest.raises(InvalidToken, match=NO_KEY):
        validator.authenticate_sync(fresh(mint))
