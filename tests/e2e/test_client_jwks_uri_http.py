"""A client's registered `jwks_uri` is a URL the registrant chose (dynamic registration lets
anyone with an initial token choose it), so the server fetches it through the SSRF guard
(oauth/outbound.py): a key set on a loopback address is never fetched unless the deployment
allows loopback (TOKENWARD_OUTBOUND_ALLOW_LOOPBACK, development and tests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.e2e.live import free_port, serve_in_thread
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.tokens.jwk import public_jwk
from tokenward.tokens.sealing import generate_master_key

KEY = ec.generate_private_key(ec.SECP256R1())


class KeySet:
    """A client's key set on loopback, counting who fetched it."""

    def __init__(self) -> None:
        self.fetches = 0

        async def jwks(_request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse({"keys": [public_jwk(KEY.public_key(), "robot-1", "ES256")]})

        self.app = Starlette(routes=[Route("/jwks", jwks)])


@contextmanager
def _serve(tmp_path: Path, keys_url: str, *, allow_loopback: bool) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        master_key=generate_master_key(),
        data_dir=tmp_path,
        outbound_allow_loopback=allow_loopback,
    )

    async def prepare() -> Any:
        services = await build_services(settings, memory_stores())
        await services.client_admin.create_client(
            "robot",
            grant_types=["client_credentials"],
            scope="read",
            redirect_uris=[],
            jwks_uri=keys_url,  # http on loopback: accepted at registration (client_uris)
        )
        return services

    services = asyncio.run(prepare())
    with serve_in_thread(server_app(services), port) as base:
        yield base


def _token_request(base: str) -> httpx.Response:
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": "robot",
            "sub": "robot",
            "aud": base,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 60,
        },
        KEY,
        algorithm="ES256",
        headers={"kid": "robot-1"},
    )
    return httpx.post(
        f"{base}/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "robot",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


@pytest.fixture
def key_set() -> Iterator[tuple[KeySet, str]]:
    keys = KeySet()
    port = free_port()
    with serve_in_thread(keys.app, port):
        yield keys, f"http://127.0.0.1:{port}/jwks"


def test_a_jwks_uri_on_loopback_is_never_fetched(
    tmp_path: Path, key_set: tuple[KeySet, str]
) -> None:
    keys, url = key_set
    with _serve(tmp_path, url, allow_loopback=False) as base:
        answer = _token_request(base)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
    assert keys.fetches == 0  # refused at connect time: the request never left


def test_the_same_client_works_where_loopback_is_allowed(
    tmp_path: Path, key_set: tuple[KeySet, str]
) -> None:
    keys, url = key_set
    with _serve(tmp_path, url, allow_loopback=True) as base:
        answer = _token_request(base)
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_type"] in ("Bearer", "DPoP")
    assert keys.fetches == 1
