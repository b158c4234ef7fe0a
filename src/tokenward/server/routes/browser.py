"""Browser-facing pages: /authorize, sign-in, consent (OIDC Core §3.1.2)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.records import ClientRecord
from tokenward.oauth.authorize import AuthorizationRequest, ErrorPage, RedirectError
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.flow import Redirect, ShowLogin, Step
from tokenward.oauth.interaction import InteractionSealer
from tokenward.ops.refusals import log_refusal
from tokenward.server.dependencies import (
    Authorization,
    Flow,
    Interactions,
    Pages,
    Resumed,
    Sessions,
    SignInDep,
)
from tokenward.server.edge import client_ip
from tokenward.server.pages import Browser
from tokenward.server.routes.device import device_after_login
from tokenward.server.signin import attempt_sign_in, form_pairs, single
from tokenward.services.authorize_clients import ResumedClients

router = APIRouter(include_in_schema=False)
START_AGAIN = "Please start again"


def _render(
    step: Step,
    client: ClientRecord,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    **extra: Any,
) -> Response:
    """The step's page: a redirect, the sign-in form, or the consent form."""
    if isinstance(step, Redirect):
        return browser.redirect(step.location, step.status)
    csrf = browser.csrf(request)
    if isinstance(step, ShowLogin):
        sealed = interactions.seal("login", {"authorize": step.request.to_dict()}, csrf)
        return browser.page(
            "login.html",
            extra.pop("status", 200),
            csrf,
            action="/login",
            interaction=sealed,
            client_name=client.name or client.client_id,
            username=extra.pop("username", step.request.login_hint or ""),
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
        client_name=client.name or client.client_id,
        username=step.session.user.username,
        scopes=step.request.scopes,
    )


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
) -> Response:
    try:
        auth_request, client = await validator.validate(pairs)
        session = await sessions.current(browser.session_of(request))
        step = await flow.next_step(auth_request, client, session)
        return _render(step, client, request, browser, interactions)
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
) -> Response:
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
    except ValueError:  # more than 64 fields
        return browser.message("This sign-in link is not valid", "It has too many parameters.")
    return await _authorize(request, pairs, validator, flow, sessions, browser, interactions)


@router.post("/authorize")  # OIDC Core §3.1.2.1: POST allowed
async def authorize_post(
    request: Request,
    validator: Authorization,
    flow: Flow,
    sessions: Sessions,
    browser: Pages,
    interactions: Interactions,
) -> Response:
    pairs = await form_pairs(request)
    return await _authorize(request, pairs, validator, flow, sessions, browser, interactions)


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
) -> Response:
    try:
        pairs = await form_pairs(request)
        state = await interactions.open(
            "login", single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
    except OAuthError as exc:
        return browser.message(START_AGAIN, exc.description)
    if "device" in state:
        return await device_after_login(sign_in, interactions, browser, request, state, pairs)
    try:
        auth_request, client = await _resume(state, clients)
    except ErrorPage as exc:
        return browser.message(START_AGAIN, exc.description)
    attempt = await attempt_sign_in(sign_in, request, pairs)
    if attempt.session is None or attempt.cookie_secret is None:
        return _render(
            ShowLogin(auth_request),
            client,
            request,
            browser,
            interactions,
            status=attempt.status,
            username=single(pairs, "username") or "",
            error=attempt.error,
        )
    try:
        step = await flow.next_step(auth_request, client, attempt.session, signed_in_now=True)
        response = _render(step, client, request, browser, interactions)
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
    return _render(step, client, request, browser, interactions)
