"""`TokenAuth(step_up=True)` against a real authorization server and a service protected by the
resource middleware with a `@step_up` policy: the challenge makes the SDK sign the user in again
with what it asked for and retry once; a second challenge raises `StepUpRequired`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.client.conftest import AuthServer
from tests.client.test_loopback import browser, desktop, query
from tests.gateway.conftest import serve
from tokenward.client import ClientCredentials, StepUpRequired, TokenAuth
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.guard.authz import PolicyEngine, load_policy_set
from tokenward.guard.authz.source import PolicyFile
from tokenward.resource.asgi import BearerAuthMiddleware
from tokenward.resource.policies import RoutePolicy

MFA = "urn:tokenward:acr:mfa"
FRESH = """
@id("signed-in")
permit (principal, action, resource);

@id("fresh-sign-in")
@step_up("max_age=60")
forbid (principal, action, resource)
unless { context.auth_age <= 60 };
"""
# alice has no second factor: no sign-in of hers reaches this.
STRICT = f"""
@id("signed-in")
permit (principal, action, resource);

@id("needs-mfa")
@step_up("acr={MFA}")
forbid (principal, action, resource)
unless {{ context.acr == "{MFA}" }};
"""


async def api(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # the lifespan: nothing to start
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Apis:
    fresh: str
    strict: str


@pytest.fixture(scope="module")
def apis(auth_server: AuthServer) -> Iterator[Apis]:
    validator = Validator(
        issuer=auth_server.issuer,
        audience=auth_server.issuer,
        any_audience=True,
        keys=KeyringKeySource(auth_server.services.keys),
        revocations=RevocationMirror(),
        clock=auth_server.clock,
    )

    def protected(text: str) -> BearerAuthMiddleware:
        engine = PolicyEngine(
            load_policy_set([PolicyFile("api.cedar", text)]), clock=auth_server.clock
        )
        return BearerAuthMiddleware(api, validator, policy=RoutePolicy.of(engine, "api"))

    with serve(protected(FRESH)) as fresh, serve(protected(STRICT)) as strict:
        yield Apis(fresh, strict)


def counting(server: AuthServer) -> tuple[Callable[[str], None], list[dict[str, str]]]:
    """A browser that signs alice in, remembering what each sign-in asked for."""
    asked: list[dict[str, str]] = []
    sign_in = browser(server)

    def open_url(url: str) -> None:
        asked.append(query(url))
        sign_in(url)

    return open_url, asked


def test_a_stale_sign_in_is_renewed_in_the_browser_and_the_request_retried(
    auth_server: AuthServer, apis: Apis
) -> None:
    open_url, asked = counting(auth_server)
    hits: list[int] = []
    with desktop(auth_server, open_url) as source:
        auth = TokenAuth(source, tokens=source.login(), step_up=True)
        with httpx.Client(auth=auth, event_hooks={"response": [lambda r: hits.append(1)]}) as http:
            assert http.get(f"{apis.fresh}/orders", timeout=10).status_code == 200
            auth_server.clock.advance(120)  # the sign-in is now older than the API accepts
            answer = http.post(f"{apis.fresh}/orders", json={"n": 1}, timeout=10)
            assert answer.status_code == 200, answer.text
    assert len(asked) == 2  # the first sign-in, then one for the step-up
    assert asked[1]["max_age"] == "60"
    assert "acr_values" not in asked[1]
    assert len(hits) == 3  # the refused request was sent again once


@pytest.mark.anyio
async def test_async_retry_once_then_step_up_required(auth_server: AuthServer, apis: Apis) -> None:
    open_url, asked = counting(auth_server)
    async with desktop(auth_server, open_url) as source:
        auth = TokenAuth(source, tokens=await source.alogin(), step_up=True)
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            with pytest.raises(StepUpRequired) as raised:
                await http.get(f"{apis.strict}/orders")
    assert raised.value.acr_values == MFA
    assert len(asked) == 2  # one step-up sign-in, not a loop
    assert asked[1]["acr_values"] == MFA


def test_sync_second_challenge_raises(auth_server: AuthServer, apis: Apis) -> None:
    open_url, asked = counting(auth_server)
    with desktop(auth_server, open_url) as source:
        auth = TokenAuth(source, tokens=source.login(), step_up=True)
        with httpx.Client(auth=auth, timeout=10) as http, pytest.raises(StepUpRequired):
            http.get(f"{apis.strict}/orders")
    assert len(asked) == 2


def test_without_step_up_the_challenge_raises_at_once(auth_server: AuthServer, apis: Apis) -> None:
    open_url, asked = counting(auth_server)
    with desktop(auth_server, open_url) as source:
        auth = TokenAuth(source, tokens=source.login())
        with httpx.Client(auth=auth, timeout=10) as http, pytest.raises(StepUpRequired):
            http.get(f"{apis.strict}/orders")
    assert len(asked) == 1


def test_step_up_needs_an_interactive_source(auth_server: AuthServer) -> None:
    source: Any = ClientCredentials(auth_server.issuer, "service", auth_server.service_secret)
    with source, pytest.raises(ValueError, match="interactive"):
        TokenAuth(source, step_up=True)
