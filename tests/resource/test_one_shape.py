"""One refusal shape: the ASGI middleware, the FastAPI dependency and the Flask decorator answer
every refusal with the same status, challenge headers and body, all rendered by
`tokenward.guard.challenge.challenge`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.resource.conftest import MISSING, REALM, Case, assert_refused
from tests.resource.test_asgi import protected_app
from tests.resource.test_fastapi import api
from tests.resource.test_flask import make_app
from tokenward.client.dpop import DpopKey
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.store.memory import MemoryReplayCache, MemoryRevocationStore
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.keyring import Keyring

RELEVANT = ("www-authenticate", "cache-control", "content-type", "dpop-nonce", "retry-after")
Answer = tuple[int, list[tuple[str, str]], Any]


def shape(status: int, headers: list[tuple[str, str]], body: bytes) -> Answer:
    kept = sorted((n.lower(), v) for n, v in headers if n.lower() in RELEVANT)
    return status, kept, json.loads(body)


async def asgi_answer(app: Any, case: Case) -> Answer:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        response = await client.get(case.target, headers=case.headers)
    return shape(response.status_code, response.headers.multi_items(), response.content)


def flask_answer(validator: Validator, case: Case) -> Answer:
    response = make_app(validator).test_client().get(case.target, headers=case.headers)
    return shape(response.status_code, list(response.headers.items()), response.data)


@pytest.mark.anyio
async def test_every_refusal_has_one_shape(validator: Validator, refusal: Case) -> None:
    answers = {
        "asgi": await asgi_answer(protected_app(validator), refusal),
        "fastapi": await asgi_answer(api(validator), refusal),
        "flask": flask_answer(validator, refusal),
    }
    assert answers["asgi"] == answers["fastapi"] == answers["flask"], answers
    status, headers, body = answers["asgi"]
    assert_refused(status, headers, json.dumps(body).encode(), refusal.expected, refusal.secrets)


# --- DPoP errors, where the validator verifies proofs (ASGI and FastAPI; Flask is Bearer-only) --
ITEMS = "http://api.test/items"
ALGS = 'DPoP algs="ES256 ES384 ES512 EdDSA RS256 PS256 ML-DSA-44 ML-DSA-65 ML-DSA-87"'


@pytest.fixture
def dpop_validator(
    keyring: Keyring, clock: FrozenClock, revocations: MemoryRevocationStore
) -> Validator:
    mirror = RevocationMirror()
    revocations.attach(mirror)
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        clock=clock,
        leeway=30,
        dpop=DpopVerifier(MemoryReplayCache(clock).first_use, None, clock),
    )


def dpop_challenge(error: str, description: str) -> str:
    return (
        f'DPoP realm="{REALM}", error="{error}", error_description="{description}", '
        + ALGS.removeprefix("DPoP ")
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("problem", "challenges"),
    [
        ("missing_proof", [dpop_challenge("invalid_dpop_proof", "a DPoP proof is required")]),
        (
            "wrong_url",
            [dpop_challenge("invalid_dpop_proof", "the DPoP proof is for another URL (htu)")],
        ),
        (
            "other_key",
            [
                dpop_challenge(
                    "invalid_dpop_proof", "the proof is not signed by the key the token is bound to"
                )
            ],
        ),
        (
            "unbound_token",
            [
                f'Bearer realm="{REALM}", error="invalid_token", '
                'error_description="the token is not DPoP-bound"',
                ALGS,
            ],
        ),
        ("no_token", [f'Bearer realm="{REALM}"', ALGS]),
    ],
)
async def test_dpop_refusals_have_one_shape(
    dpop_validator: Validator,
    mint: Callable[..., str],
    clock: FrozenClock,
    problem: str,
    challenges: list[str],
) -> None:
    key, thief = DpopKey(clock=clock), DpopKey(clock=clock)
    bound, unbound = mint(cnf={"jkt": key.thumbprint}), mint()

    def headers() -> list[tuple[str, str]]:  # new proofs per request: a proof is single use
        if problem == "no_token":
            return []
        if problem == "missing_proof":
            return [("authorization", f"DPoP {bound}")]
        if problem == "unbound_token":
            return [
                ("authorization", f"DPoP {unbound}"),
                ("dpop", key.proof("GET", ITEMS, access_token=unbound)),
            ]
        signer, url = (thief, ITEMS) if problem == "other_key" else (key, ITEMS + "/other")
        return [
            ("authorization", f"DPoP {bound}"),
            ("dpop", signer.proof("GET", url, access_token=bound)),
        ]

    answers = [
        await asgi_answer(app, Case(headers(), MISSING))
        for app in (protected_app(dpop_validator), api(dpop_validator))
    ]
    assert answers[0] == answers[1]
    status, kept, body = answers[0]
    assert status == 401
    assert [value for name, value in kept if name == "www-authenticate"] == sorted(challenges)
    assert set(body) <= {"error", "error_description"}
