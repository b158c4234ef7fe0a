"""Device authorization (RFC 8628): the device endpoint and the pages where users approve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.assurance import floor_of, satisfies
from tokenward.core.throttle import Attempt, SignInThrottle
from tokenward.oauth.device import display_user_code, normalise_user_code
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.server.dependencies import (
    Approval,
    Config,
    Device,
    Factors,
    Interactions,
    Pages,
    Sessions,
    Throttle,
)
from tokenward.server.edge import JSONResponse, read_form, single_header
from tokenward.server.pages import Browser
from tokenward.server.signin import attempt_sign_in, form_pairs, single
from tokenward.server.steps import factor_page, passkey_signin_fields
from tokenward.services.second_factors import SecondFactors
from tokenward.services.signin import PasswordSignIn
from tokenward.serving.tls import peer_certificate

BAD_CODE = "That code is not valid or has expired. Check your device and try again."
ENDED = "The form expired or your session ended."
NEEDS_FACTOR = (
    "{} requires a second factor your account does not have. Set one up at /account, "
    "then start again on your device."
)
router = APIRouter()


def _login_page(
    interactions: InteractionSealer,
    browser: Browser,
    request: Request,
    user_code: str,
    factors: SecondFactors,
    **extra: Any,
) -> Response:
    """The sign-in page of /authorize, for a device: a password, or a passkey alone (which
    comes back to /device at its level, factors.py)."""
    csrf = browser.csrf(request)
    origin = {"device": {"user_code": user_code}}
    sealed = interactions.seal("login", origin, csrf)
    return browser.script_page(
        "login.html",
        extra.pop("status", 200),
        csrf,
        action="/login",
        interaction=sealed,
        client_name="your device",
        username="",
        **passkey_signin_fields(origin, csrf, interactions, factors),
        **extra,
    )


def _code_page(
    interactions: InteractionSealer,
    browser: Browser,
    request: Request,
    session: ActiveSession,
    user_code: str,
    **extra: Any,
) -> Response:
    csrf = browser.csrf(request)
    sealed = interactions.seal("device", {"user_id": session.user.user_id}, csrf)
    return browser.page(
        "device.html",
        extra.pop("status", 200),
        csrf,
        action="/device",
        interaction=sealed,
        username=session.user.username,
        user_code=user_code,
        **extra,
    )


async def device_after_login(
    sign_in: PasswordSignIn,
    interactions: InteractionSealer,
    browser: Browser,
    request: Request,
    state: dict[str, Any],
    pairs: list[tuple[str, str]],
    factors: SecondFactors,
) -> Response:
    """The sign-in form of the device pages was posted (to /login, which the browser pages
    share): sign in, then ask for the code."""
    user_code = str(state["device"].get("user_code", ""))[:32]
    attempt = await attempt_sign_in(sign_in, request, pairs)
    if attempt.session is None or attempt.cookie_secret is None:
        return _login_page(
            interactions,
            browser,
            request,
            user_code,
            factors,
            status=attempt.status,
            error=attempt.error,
        )
    gate = await _factor_gate(attempt.session, user_code, request, browser, interactions, factors)
    response = gate or _code_page(interactions, browser, request, attempt.session, user_code)
    browser.set_session(response, attempt.cookie_secret)
    return response


@router.post(
    "/device_authorization", summary="Device authorization (RFC 8628 §3.1)", tags=["oauth"]
)
async def device_authorization(request: Request, device: Device, settings: Config) -> Response:
    form = await read_form(request, settings.max_body_bytes)
    body = await device.start(
        form.params,
        form.resources,
        single_header(request, "authorization"),
        peer_certificate(request.scope),
    )
    return JSONResponse(body, headers=NO_STORE)


async def _factor_gate(
    session: ActiveSession,
    user_code: str,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
) -> Response | None:
    """A user who set up a second factor approves devices with it too (the password alone
    would otherwise be enough to connect a device): its page, or None when the session has it."""
    methods = await factors.catalogue.methods(session.user.user_id)
    floor = floor_of(methods)
    if floor is None or satisfies(session.record.acr, floor):
        return None
    origin = {"device": {"user_code": user_code}}
    return factor_page(
        session,
        floor,
        methods,
        "your device",
        request,
        browser,
        interactions,
        factors,
        origin=origin,
    )


@router.get("/device", include_in_schema=False)
async def device_page(
    request: Request,
    browser: Pages,
    sessions: Sessions,
    interactions: Interactions,
    factors: Factors,
) -> Response:
    user_code = request.query_params.get("user_code", "")[:32]
    session = await sessions.current(browser.session_of(request))
    if session is None:
        return _login_page(interactions, browser, request, user_code, factors)
    gate = await _factor_gate(session, user_code, request, browser, interactions, factors)
    if gate is not None:
        return gate
    return _code_page(interactions, browser, request, session, user_code)


async def _checked(
    request: Request,
    kind: str,
    browser: Browser,
    interactions: InteractionSealer,
    sessions: SessionManager,
    factors: SecondFactors,
) -> tuple[list[tuple[str, str]], dict[str, Any], ActiveSession]:
    pairs = await form_pairs(request)
    state = await interactions.open(
        kind, single(pairs, "interaction"), browser.csrf_cookie_of(request)
    )
    session = await sessions.current(browser.session_of(request))
    if session is None or session.user.user_id != state["user_id"]:
        raise _SessionEnded
    floor = floor_of(await factors.catalogue.methods(session.user.user_id))
    if floor is not None and not satisfies(session.record.acr, floor):
        raise _SessionEnded  # the pages above asked for the factor; this form skipped them
    return pairs, state, session


async def _throttled(throttle: SignInThrottle, session: ActiveSession, request: Request) -> Attempt:
    """Wrong codes count as failed sign-ins of the user (per user and address)."""
    ip = request.client.host if request.client else "unknown"
    return await throttle.attempt(f"device:{session.user.user_id}", ip)


@router.post("/device", include_in_schema=False)
async def enter_code(
    request: Request,
    browser: Pages,
    sessions: Sessions,
    interactions: Interactions,
    approval: Approval,
    throttle: Throttle,
    factors: Factors,
) -> Response:
    try:
        pairs, _state, session = await _checked(
            request, "device", browser, interactions, sessions, factors
        )
    except (OAuthError, _SessionEnded):
        return browser.message("Please start again", ENDED)
    attempt = await _throttled(throttle, session, request)
    if attempt.wait is not None:
        error = "Too many wrong codes. Wait a few minutes and try again."
        return _code_page(interactions, browser, request, session, "", status=429, error=error)
    code = normalise_user_code(single(pairs, "user_code") or "")
    pending = await approval.pending(code)
    if pending is None:
        return _code_page(interactions, browser, request, session, "", status=400, error=BAD_CODE)
    await throttle.forgive(attempt)  # a right code is no failure
    methods = await factors.catalogue.methods(session.user.user_id)
    if not pending.reachable(methods):  # as /authorize: access_denied, which the device hears
        await approval.decide(code, False, session)
        return browser.message("Request denied", NEEDS_FACTOR.format(pending.client_name), 403)
    level = pending.missing(methods, session)
    if level is not None:  # the client or the device asks for more than this session has
        origin = {"device": {"user_code": code}}
        return factor_page(
            session,
            level,
            methods,
            pending.client_name,
            request,
            browser,
            interactions,
            factors,
            origin=origin,
        )
    csrf = browser.csrf(request)
    sealed = interactions.seal(
        "device-confirm", {"user_id": session.user.user_id, "user_code": code}, csrf
    )
    return browser.page(
        "device_confirm.html",
        200,
        csrf,
        action="/device/decision",
        interaction=sealed,
        client_name=pending.client_name,
        user_code=display_user_code(code),
        scopes=sorted(pending.record.scopes),
    )


@router.post("/device/decision", include_in_schema=False)
async def decide(
    request: Request,
    browser: Pages,
    sessions: Sessions,
    interactions: Interactions,
    approval: Approval,
    factors: Factors,
) -> Response:
    try:
        pairs, state, session = await _checked(
            request, "device-confirm", browser, interactions, sessions, factors
        )
    except (OAuthError, _SessionEnded):
        return browser.message("Please start again", ENDED)
    approved = single(pairs, "decision") == "approve"
    pending = await approval.pending(str(state["user_code"]))
    methods = await factors.catalogue.methods(session.user.user_id)
    if approved and pending is not None and pending.missing(methods, session) is not None:
        return browser.message("Please start again", ENDED)  # the code page asked for it
    if not await approval.decide(state["user_code"], approved, session):
        return browser.message("Code expired", BAD_CODE)
    if approved:
        return browser.message(
            "Device connected", "You can return to your device now.", 200, error=False
        )
    return browser.message("Request denied", "The device was not given access.", 200, error=False)


class _SessionEnded(Exception):
    pass
