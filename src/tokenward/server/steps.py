"""The pages of the authorization flow's steps (oauth/flow.py): sign-in, second factor, consent,
or the redirect; shared by /authorize, /login, /consent and the second-factor routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tokenward.core.assurance import PASSKEY, PHR, TOTP
from tokenward.core.records import ClientRecord
from tokenward.oauth.flow import Redirect, ShowFactor, ShowLogin, Step
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.sessions import ActiveSession
from tokenward.server.pages import Browser, script_json
from tokenward.services.second_factors import SecondFactors

# Where an account sign-in (origin {"account": True}) goes on: /account, or the developer
# portal's pages. A fixed list, so a sealed state can never name another place.
ACCOUNT_PAGES = ("/account", "/portal")


def account_origin(next_page: str = "/account") -> dict[str, Any]:
    """The sealed origin of an account sign-in that continues at `next_page`."""
    return {"account": True, "next": next_page if next_page in ACCOUNT_PAGES else "/account"}


def next_page_of(state: dict[str, Any]) -> str:
    page = state.get("next")
    return page if isinstance(page, str) and page in ACCOUNT_PAGES else "/account"


def render(
    step: Step,
    client: ClientRecord,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
    **extra: Any,
) -> Response:
    """The step's page: a redirect, the sign-in form, a second factor, or the consent form."""
    if isinstance(step, Redirect):
        return browser.redirect(step.location, step.status)
    name = client.name or client.client_id
    if isinstance(step, ShowFactor):
        origin = {"authorize": step.request.to_dict()}
        return factor_page(
            step.session,
            step.level,
            step.methods,
            name,
            request,
            browser,
            interactions,
            factors,
            origin=origin,
        )
    csrf = browser.csrf(request)
    if isinstance(step, ShowLogin):
        authorize = step.request.to_dict()
        sealed = interactions.seal("login", {"authorize": authorize}, csrf)
        return browser.script_page(
            "login.html",
            extra.pop("status", 200),
            csrf,
            action="/login",
            interaction=sealed,
            client_name=name,
            username=extra.pop("username", step.request.login_hint or ""),
            **passkey_signin_fields({"authorize": authorize}, csrf, interactions, factors),
            **extra,
        )
    state = {"authorize": step.request.to_dict(), "user_id": step.session.user.user_id}
    sealed = interactions.seal("consent", state, csrf)
    return browser.page(
        "consent.html",
        200,
        csrf,
        action="/consent",
        interaction=sealed,
        client_name=name,
        username=step.session.user.username,
        scopes=step.request.scopes,
    )


def factor_page(
    session: ActiveSession,
    level: str,
    methods: frozenset[str],
    client_name: str,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
    *,
    origin: dict[str, Any],
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The page asking for the factor `level` needs. `origin`: where the flow goes on
    ({"authorize": ...} or {"account": True})."""
    csrf = browser.csrf(request)
    totp = TOTP in methods and level != PHR
    passkey = PASSKEY in methods
    state: dict[str, Any] = {
        **origin,
        "user_id": session.user.user_id,
        "session_id": session.record.session_id,
        "level": level,
    }
    options = None
    if passkey:
        ceremony = factors.passkeys.authentication()
        state["challenge"] = ceremony.challenge
        options = script_json(ceremony.options)
    return browser.script_page(
        "factor.html",
        status,
        csrf,
        interaction=interactions.seal("factor", state, csrf),
        client_name=client_name,
        totp=totp,
        passkey=passkey,
        passkey_only=passkey and not totp,
        passkey_options=options,
        error=error,
    )


def passkey_signin_fields(
    origin: dict[str, Any],
    csrf: str,
    interactions: InteractionSealer,
    factors: SecondFactors,
    kind: str = "passkey-signin",
) -> dict[str, Any]:
    """A sign-in page's "Sign in with a passkey" form: its own sealed interaction (of `kind`:
    the console's opens only at the console's route), with the usernameless ceremony's
    options for /assets/passkeys.js. Shared by /authorize's, /device's and the console's."""
    ceremony = factors.passkeys.authentication()
    state = {**origin, "challenge": ceremony.challenge}
    return {
        "passkey_interaction": interactions.seal(kind, state, csrf),
        "passkey_options": script_json(ceremony.options),
    }
