"""/account: a user sets up and removes their own second factors: an authenticator app (TOTP,
with a QR code and recovery codes shown once), and passkeys.

Changing how an account signs in needs a sign-in within the last ten minutes, with the
account's second factor if it has one, so a stolen password alone or an old session left open
cannot remove or replace the factor. Every form carries one sealed interaction (the enrolment
secret and the passkey challenge travel in it), good once and bound to this browser.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.assurance import floor_of, satisfies
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.server.dependencies import Factors, Interactions, Pages, Sessions
from tokenward.server.pages import Browser, script_json
from tokenward.server.signin import attempt_sign_in, form_pairs, single
from tokenward.server.steps import account_origin, factor_page, passkey_signin_fields
from tokenward.services.passkeys import PasskeyError
from tokenward.services.second_factors import SecondFactors
from tokenward.services.signin import PasswordSignIn

router = APIRouter(include_in_schema=False)
RECENT = 600  # seconds: how fresh a sign-in must be to change the account's factors
TITLE = "your account"


def login_page(
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
    *,
    error: str | None = None,
    status: int = 200,
    username: str = "",
    next_page: str = "/account",
) -> Response:
    """The sign-in page of /account (or of the developer portal: `next_page`)."""
    csrf = browser.csrf(request)
    origin = account_origin(next_page)
    return browser.script_page(
        "login.html",
        status,
        csrf,
        action="/login",
        interaction=interactions.seal("login", origin, csrf),
        client_name=TITLE,
        username=username,
        error=error,
        **passkey_signin_fields(origin, csrf, interactions, factors),
    )


async def gate(
    session: ActiveSession | None,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    sessions: SessionManager,
    factors: SecondFactors,
    *,
    next_page: str = "/account",
    recent: int | None = RECENT,
) -> Response | None:
    """None when the session may go on (signed in within `recent` seconds, if given, and with
    the account's second factor if it has one); else the page that gets it there."""
    if session is None or (recent is not None and not sessions.recent(session, recent)):
        return login_page(request, browser, interactions, factors, next_page=next_page)
    methods = await factors.catalogue.methods(session.user.user_id)
    floor = floor_of(methods)
    if floor is not None and not satisfies(session.record.acr, floor):
        origin = account_origin(next_page)
        return factor_page(
            session, floor, methods, TITLE, request, browser, interactions, factors, origin=origin
        )
    return None


async def account_after_login(
    sign_in: PasswordSignIn,
    request: Request,
    pairs: list[tuple[str, str]],
    browser: Browser,
    interactions: InteractionSealer,
    sessions: SessionManager,
    factors: SecondFactors,
    *,
    next_page: str = "/account",
) -> Response:
    """The account's sign-in form was posted (to /login, which the sign-in pages share)."""
    attempt = await attempt_sign_in(sign_in, request, pairs)
    if attempt.session is None or attempt.cookie_secret is None:
        return login_page(
            request,
            browser,
            interactions,
            factors,
            error=attempt.error,
            status=attempt.status,
            username=single(pairs, "username") or "",
            next_page=next_page,
        )
    stop = await gate(
        attempt.session, request, browser, interactions, sessions, factors, next_page=next_page
    )
    response = stop if stop is not None else browser.redirect(next_page)
    browser.set_session(response, attempt.cookie_secret)
    return response


async def _page(
    session: ActiveSession,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    factors: SecondFactors,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    user = session.user
    summary = await factors.catalogue.summary(user.user_id)
    csrf = browser.csrf(request)
    state: dict[str, Any] = {"user_id": user.user_id, "session_id": session.record.session_id}
    enrolment = None
    if not summary.totp:
        enrolment = factors.totp.start(user.username)
        state["secret"] = enrolment.secret
    ceremony = factors.passkeys.registration(user, await factors.passkeys.of_user(user.user_id))
    state["challenge"] = ceremony.challenge
    return browser.script_page(
        "account.html",
        status,
        csrf,
        interaction=interactions.seal("account", state, csrf),
        username=user.username,
        totp=summary.totp,
        recovery_left=summary.recovery_codes,
        qr=enrolment.qr if enrolment else None,
        secret=enrolment.secret if enrolment else None,
        passkeys=summary.passkeys,
        passkey_options=script_json(ceremony.options),
        **extra,
    )


@router.get("/account")
async def account(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    session = await sessions.current(browser.session_of(request))
    stop = await gate(session, request, browser, interactions, sessions, factors)
    if stop is not None or session is None:
        return stop or login_page(request, browser, interactions, factors)
    return await _page(session, request, browser, interactions, factors)


async def _posted(
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    sessions: SessionManager,
    factors: SecondFactors,
) -> tuple[list[tuple[str, str]], dict[str, Any], ActiveSession] | Response:
    try:
        pairs = await form_pairs(request)
        state = await interactions.open(
            "account", single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
    except OAuthError as exc:
        return browser.message("Please start again", exc.description)
    session = await sessions.current(browser.session_of(request))
    if session is None or session.record.session_id != state["session_id"]:
        return login_page(request, browser, interactions, factors)
    stop = await gate(session, request, browser, interactions, sessions, factors)
    return stop if stop is not None else (pairs, state, session)


@router.post("/account/totp")
async def enrol_totp(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    posted = await _posted(request, browser, interactions, sessions, factors)
    if isinstance(posted, Response):
        return posted
    pairs, state, session = posted
    code = (single(pairs, "code") or "")[:16]
    user_id = session.user.user_id
    if "secret" not in state or not await factors.totp.confirm(user_id, state["secret"], code):
        return await _page(
            session,
            request,
            browser,
            interactions,
            factors,
            status=400,
            error="That code is not right: scan the new QR code and try again.",
        )
    codes = await factors.recovery.issue(user_id)
    return await _page(
        session,
        request,
        browser,
        interactions,
        factors,
        codes=codes,
        notice="The authenticator app is on: sign-ins now ask for its code.",
    )


@router.post("/account/recovery-codes")
async def new_recovery_codes(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    posted = await _posted(request, browser, interactions, sessions, factors)
    if isinstance(posted, Response):
        return posted
    _, _, session = posted
    codes = await factors.recovery.issue(session.user.user_id)
    return await _page(session, request, browser, interactions, factors, codes=codes)


@router.post("/account/totp/remove")
async def remove_totp(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    posted = await _posted(request, browser, interactions, sessions, factors)
    if isinstance(posted, Response):
        return posted
    _, _, session = posted
    await factors.totp.remove(session.user.user_id)
    await factors.recovery.clear(session.user.user_id)
    return await _page(
        session, request, browser, interactions, factors, notice="The authenticator is removed."
    )


@router.post("/account/passkeys")
async def add_passkey(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    posted = await _posted(request, browser, interactions, sessions, factors)
    if isinstance(posted, Response):
        return posted
    pairs, state, session = posted
    try:
        added = await factors.passkeys.register(
            session.user,
            (single(pairs, "credential") or "")[: 8 * 1024],
            str(state.get("challenge", "")),
            (single(pairs, "name") or "")[:64],
        )
    except PasskeyError as exc:
        return await _page(
            session, request, browser, interactions, factors, status=400, error=str(exc)
        )
    return await _page(
        session, request, browser, interactions, factors, notice=f"Passkey {added.name} added."
    )


@router.post("/account/passkeys/remove")
async def remove_passkey(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
) -> Response:
    posted = await _posted(request, browser, interactions, sessions, factors)
    if isinstance(posted, Response):
        return posted
    pairs, _, session = posted
    removed = await factors.passkeys.remove(
        session.user.user_id, single(pairs, "credential_id") or ""
    )
    notice = "The passkey is removed." if removed else "That passkey was not found."
    return await _page(session, request, browser, interactions, factors, notice=notice)
