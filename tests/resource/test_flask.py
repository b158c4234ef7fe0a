"""The Flask decorator through Flask's test client and real signed tokens."""

from __future__ import annotations

from collections.abc import Callable

import flask
import pytest
from flask.testing import FlaskClient

from tests.conftest import FrozenClock
from tests.resource.conftest import (
    MISSING,
    REALM,
    TWO_HEADERS,
    Case,
    assert_no_leak,
    assert_refused,
    insufficient_scope,
    invalid_request,
    invalid_token,
)
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import Validator
from tokenward.resource.flask import bearer_required
from tokenward.store.memory import MemoryRevocationStore


def make_app(validator: Validator | None, explicit: Validator | None = None) -> flask.Flask:
    app = flask.Flask(__name__)
    app.testing = True  # server errors propagate to the test instead of becoming a 500
    if validator is not None:
        app.extensions["tokenward"] = validator

    @app.get("/items")
    @bearer_required("read", realm=REALM)
    def items() -> dict[str, object]:
        token = flask.g.access_token
        return {"sub": token.sub, "scopes": sorted(token.scopes)}

    @app.get("/write")
    @bearer_required("write", "read", validator=explicit, realm=REALM)
    def write() -> dict[str, object]:
        return {"sub": flask.g.access_token.sub}

    return app


@pytest.fixture
def client(validator: Validator) -> FlaskClient:
    return make_app(validator).test_client()


def test_valid_token_reaches_the_view(client: FlaskClient, mint: Callable[..., str]) -> None:
    token = mint(scopes=("read", "write"))
    response = client.get("/items", headers={"Authorization": "Bearer " + token})
    assert response.status_code == 200
    assert response.json == {"sub": "alice", "scopes": ["read", "write"]}
    assert_no_leak(response.headers.items(), response.data, [token])


def test_refusals_render_rfc6750_challenges(client: FlaskClient, refusal: Case) -> None:
    response = client.get(refusal.target, headers=refusal.headers)
    assert_refused(
        response.status_code,
        response.headers.items(),
        response.data,
        refusal.expected,
        refusal.secrets,
    )


def test_folded_authorization_headers_are_two_headers(
    client: FlaskClient, mint: Callable[..., str]
) -> None:
    """WSGI joins repeated headers with a comma; the decorator sees one value and refuses it."""
    token = mint()
    response = client.get("/items", headers={"Authorization": f"Bearer {token}, Bearer {token}"})
    assert_refused(
        response.status_code,
        response.headers.items(),
        response.data,
        invalid_request(TWO_HEADERS),
        [token],
    )


def test_other_schemes_with_commas_are_just_missing_bearer(client: FlaskClient) -> None:
    response = client.get("/items", headers={"Authorization": 'Digest username="a", nc=1'})
    assert_refused(response.status_code, response.headers.items(), response.data, MISSING)


@pytest.mark.anyio
async def test_revoked_token_refused_on_the_next_request(
    client: FlaskClient,
    mint: Callable[..., str],
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
) -> None:
    token = mint(session_id="session-1")
    headers = {"Authorization": "Bearer " + token}
    assert client.get("/items", headers=headers).status_code == 200
    await revocations.revoke(
        Revocation(RevocationKind.SESSION, "session-1", clock() + 1, clock() + 3600)
    )
    response = client.get("/items", headers=headers)
    assert_refused(
        response.status_code,
        response.headers.items(),
        response.data,
        invalid_token("the session ended"),
        [token],
    )


def test_explicit_validator_and_several_scopes(
    validator: Validator, mint: Callable[..., str]
) -> None:
    client = make_app(None, explicit=validator).test_client()
    narrow, wide = mint(scopes=("read",)), mint(scopes=("read", "write"))
    refused = client.get("/write", headers={"Authorization": "Bearer " + narrow})
    allowed = client.get("/write", headers={"Authorization": "Bearer " + wide})
    assert_refused(
        refused.status_code,
        refused.headers.items(),
        refused.data,
        insufficient_scope("read write"),
        [narrow],
    )
    assert allowed.json == {"sub": "alice"}


def test_missing_validator_is_a_server_error(mint: Callable[..., str]) -> None:
    client = make_app(None).test_client()
    with pytest.raises(RuntimeError, match="extensions"):
        client.get("/items", headers={"Authorization": "Bearer " + mint()})


def test_token_is_not_left_on_g_for_a_refused_request(validator: Validator) -> None:
    app = make_app(validator)
    with app.test_request_context("/items", headers={"Authorization": "Bearer x.y.z"}):
        response = app.view_functions["items"]()
        assert isinstance(response, flask.Response)
        assert response.status_code == 401
        assert "access_token" not in flask.g
