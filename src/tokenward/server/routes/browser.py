"""Browser-facing pages: /authorize, sign-in, consent (OIDC Core §3.1.2)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.records import ClientRecord
from tokenward.oauth.authorize import AuthorizationRequest, ErrorPage, RedirectError
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.flow import ShowLogin
from tokenward.oauth.interaction import InteractionSealer
from tokenward.ops.refusals import log_refusal
from tokenward.server.dependencies import (
    Authorization,
    Factors,
    Flow,
    Interactions,
    Pages,
    Resumed,
    Sessions,
    SignInDep,
)
from tokenward.server.edge import client_ip
from tokenward.server.pages import Browser
from tokenward.server.routes.account import account_after_login
from tokenward.server.routes.device import device_after_login
from tokenward.server.signin import attempt_sign_in, form_pairs, single
from tokenward.server.steps import next_page_of, render
from tokenward.services.authorize_clients import ResumedClients
from tokenward.services.second_factors import SecondFactors

router = APIRouter(include_in_schema=False)
START_AGAIN = "Please start again"


def _refused(request: Request, pairs: list[tuple[str, str]], error: str, description: str) -> None:
    client_id = next((value for name, value in pairs if name == "client_id"), None)
    log_refusal("/authorize", error, description, client_id=client_id, client_ip=client_ip(request))


async def _authorize(
    request: Request,
    pairs: list[tuple[str, str]],
    validator: Authorization,
    flow: Flow,
    sessions: Sessions,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
) -> Response:
    try:
        auth_request, client = await validator.validate(pairs)
        session = await sessions.current(browser.session_of(request))
        step = await flow.next_step(auth_request, client, session)
        return render(step, client, request, browser, interactions, factors)
    except ErrorPage as exc:
        _refused(request, pairs, "invalid_request", exc.description)
        return browser.message("This sign-in link is not valid", exc.description)
    except RedirectError as exc:
        _refused(request, pairs, exc.error.error, exc.error.description)
        return browser.redirect(exc.location, exc.status)


@router.get("/authorize")
async def authorize_get(
    request: Request,
    validator: Authorization,
    flow: Flow,
    sessions: Sessions,
    browser: Pages,
    interactions: Interactions,
    factors: Factors,
) -> Response:
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
    except ValueError:  # more than 64 fields
        return browser.message("This sign-in link is not valid", "It has too many parameters.")
    return await _authorize(
        request, pairs, validator, flow, sessions, browser, interactions, factors
    )


@router.post("/authorize")  # OIDC Core §3.1.2.1: POST allowed
async def authorize_post(
    request: Request,
    validator: Authorization,
    flow: Flow,
    sessions: Sessions,
    browser: Pages,
    interactions: Interactions,
    factors: Factors,
) -> Response:
    pairs = await form_pairs(request)
    return await _authorize(
        request, pairs, validator, flow, sessions, browser, interactions, factors
    )


async def _resume(
    state: dict[str, Any], clients: ResumedClients
) -> tuple[AuthorizationRequest, ClientRecord]:
    auth_request = AuthorizationRequest.from_dict(state["authorize"])
    client = await clients.usable(auth_request.client_id)
    if client is None:
        raise ErrorPage("The application is no longer available.")
    return auth_request, client


@router.post("/login")
async def login(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    clients: Resumed,
    sign_in: SignInDep,
    flow: Flow,
    factors: Factors,
    sessions: Sessions,
) -> Response:
    try:
        pairs = await form_pairs(request)
        state = await interactions.open(
            "login", single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
    except OAuthError as exc:
        return browser.message(START_AGAIN, exc.description)
    if "device" in state:
        return await device_after_login(
            sign_in, interactions, browser, request, state, pairs, factors
        )
    if state.get("account"):
        return await account_after_login(
            sign_in,
            request,
            pairs,
            browser,
            interactions,
            sessions,
            factors,
            next_page=next_page_of(state),
        )
    try:
        auth_request, client = await _resume(state, clients)
    except ErrorPage as exc:
        return browser.message(START_AGAIN, exc.description)
    attempt = await attempt_sign_in(sign_in, request, pairs)
    if attempt.session is None or attempt.cookie_secret is None:
        return render(
            ShowLogin(auth_request),
            client,
            request,
            browser,
            interactions,
            factors,
            status=attempt.status,
            username=single(pairs, "username") or "",
            error=attempt.error,
        )
    try:
        step = await flow.next_step(auth_request, client, attempt.session, signed_in_now=True)
        response = render(step, client, request, browser, interactions, factors)
    except RedirectError as exc:
        response = browser.redirect(exc.location, exc.status)
    browser.set_session(response, attempt.cookie_secret)
    return response


@router.post("/consent")
async def consent(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    clients: Resumed,
    sessions: Sessions,
    flow: Flow,
    factors: Factors,
) -> Response:
    try:
        pairs = await form_pairs(request)
        state = await interactions.open(
            "consent", single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
        auth_request, client = await _resume(state, clients)
    except (OAuthError, ErrorPage) as exc:
        return browser.message(START_AGAIN, getattr(exc, "description", "The form expired."))
    session = await sessions.current(browser.session_of(request))
    if session is None or session.user.user_id != state["user_id"]:
        return browser.message(START_AGAIN, "Your session ended; sign in again.")
    if single(pairs, "decision") != "approve":
        denied = flow.denied(auth_request)
        return browser.redirect(denied.location, denied.status)
    await flow.record_consent(auth_request, session)
    try:
        step = await flow.next_step(
            auth_request, client, session, signed_in_now=True, consented_now=True
        )
    except RedirectError as exc:
        return browser.redirect(exc.location, exc.status)
    return render(step, client, request, browser, interactions, factors)
