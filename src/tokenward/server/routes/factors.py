"""Second factors in the sign-in pages: the factor page the flow asks for (oauth/flow.py
ShowFactor), /login/totp (a TOTP or recovery code), /login/passkey (a passkey for the signed-in
user) and /login/passkey-signin (a passkey alone, usernameless, from the sign-in page).

Each form carries a sealed interaction (oauth/interaction.py): for the factor page the request,
the user, the password-only session it raises and the passkey challenge, good once. A factor
that verifies starts a new session at the level reached (core/assurance.py) and ends the old.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.assurance import MFA, PHR
from tokenward.core.records import ClientRecord
from tokenward.oauth.authorize import AuthorizationRequest, ErrorPage, RedirectError
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.flow import AuthorizationFlow
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.server.dependencies import (
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
from tokenward.server.signin import form_pairs, single
from tokenward.server.steps import account_origin, factor_page, next_page_of, render
from tokenward.services.authorize_clients import ResumedClients
from tokenward.services.passkeys import PasskeyError
from tokenward.services.recovery_codes import looks_like_recovery_code
from tokenward.services.second_factors import SecondFactors
from tokenward.services.signin import PasswordSignIn

router = APIRouter(include_in_schema=False)
START_AGAIN = "Please start again"
SCRIPT = Path(__file__).resolve().parents[1] / "static" / "passkeys" / "passkeys.js"
MAX_CODE = 64
MAX_CREDENTIAL = 8 * 1024


async def _resume(
    state: dict[str, Any], clients: ResumedClients
) -> tuple[AuthorizationRequest, ClientRecord]:
    auth_request = AuthorizationRequest.from_dict(state["authorize"])
    client = await clients.usable(auth_request.client_id)
    if client is None:
        raise ErrorPage("The application is no longer available.")
    return auth_request, client


async def _continue(
    request: Request,
    state: dict[str, Any],
    session: ActiveSession,
    cookie_secret: str,
    browser: Browser,
    interactions: InteractionSealer,
    clients: ResumedClients,
    flow: AuthorizationFlow,
    factors: SecondFactors,
) -> Response:
    """After a factor: the account page, or the authorization request's next step."""
    if state.get("account"):
        response: Response = browser.redirect(next_page_of(state))
    elif "device" in state:  # back to the device code page, now at the level it needs
        user_code = str(state["device"].get("user_code", ""))[:32]
        response = browser.redirect("/device?" + urlencode({"user_code": user_code}))
    else:
        try:
            auth_request, client = await _resume(state, clients)
        except ErrorPage as exc:
            return browser.message(START_AGAIN, exc.description)
        try:
            step = await flow.next_step(auth_request, client, session, signed_in_now=True)
            response = render(step, client, request, browser, interactions, factors)
        except RedirectError as exc:
            response = browser.redirect(exc.location, exc.status)
    browser.set_session(response, cookie_secret)
    return response


async def _factor_state(
    request: Request, browser: Browser, interactions: InteractionSealer, sessions: SessionManager
) -> tuple[list[tuple[str, str]], dict[str, Any], ActiveSession]:
    pairs = await form_pairs(request)
    state = await interactions.open(
        "factor", single(pairs, "interaction"), browser.csrf_cookie_of(request)
    )
    session = await sessions.current(browser.session_of(request))
    # The factor raises the session the password started, in this browser, for this user.
    if (
        session is None
        or session.record.session_id != state["session_id"]
        or session.user.user_id != state["user_id"]
    ):
        raise ErrorPage("Your session ended; sign in again.")
    return pairs, state, session


async def _again(
    state: dict[str, Any],
    session: ActiveSession,
    error: str,
    status: int,
    request: Request,
    browser: Browser,
    interactions: InteractionSealer,
    clients: ResumedClients,
    factors: SecondFactors,
) -> Response:
    """The factor page once more, with the error (a new interaction: the old one is spent)."""
    methods = await factors.catalogue.methods(session.user.user_id)
    name = "your account"
    origin: dict[str, Any] = account_origin(next_page_of(state))
    if "device" in state:
        name, origin = "your device", {"device": state["device"]}
    elif not state.get("account"):
        try:
            auth_request, client = await _resume(state, clients)
        except ErrorPage as exc:
            return browser.message(START_AGAIN, exc.description)
        name = client.name or client.client_id
        origin = {"authorize": auth_request.to_dict()}
    return factor_page(
        session,
        str(state["level"]),
        methods,
        name,
        request,
        browser,
        interactions,
        factors,
        origin=origin,
        error=error,
        status=status,
    )


def _failed(sign_in: PasswordSignIn, request: Request, username: str, status: int) -> None:
    reason = "throttled" if status == 429 else "wrong_second_factor"
    sign_in.report_failure(client_ip(request) or "unknown", username, reason)


@router.post("/login/totp")
async def login_totp(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    clients: Resumed,
    sessions: Sessions,
    flow: Flow,
    factors: Factors,
    sign_in: SignInDep,
) -> Response:
    try:
        pairs, state, session = await _factor_state(request, browser, interactions, sessions)
    except (OAuthError, ErrorPage) as exc:
        return browser.message(START_AGAIN, getattr(exc, "description", "The form expired."))
    code = (single(pairs, "code") or "")[:MAX_CODE]
    user = session.user
    ip = client_ip(request) or "unknown"
    if looks_like_recovery_code(code):
        check = await factors.recovery.use_throttled(user.user_id, user.username, code, ip)
    else:
        check = await factors.totp.verify(user.user_id, user.username, code, ip)
    if not check.ok:
        _failed(sign_in, request, user.username, check.status)
        return await _again(
            state,
            session,
            check.error or "",
            check.status,
            request,
            browser,
            interactions,
            clients,
            factors,
        )
    started = await sessions.start_for(user.user_id, MFA, replacing=session.record.session_id)
    if started is None:
        return browser.message(START_AGAIN, "Your account is not available.")
    secret, raised = started
    return await _continue(
        request, state, raised, secret, browser, interactions, clients, flow, factors
    )


@router.post("/login/passkey")
async def login_passkey(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    clients: Resumed,
    sessions: Sessions,
    flow: Flow,
    factors: Factors,
    sign_in: SignInDep,
) -> Response:
    try:
        pairs, state, session = await _factor_state(request, browser, interactions, sessions)
    except (OAuthError, ErrorPage) as exc:
        return browser.message(START_AGAIN, getattr(exc, "description", "The form expired."))
    credential = (single(pairs, "credential") or "")[:MAX_CREDENTIAL]
    try:
        await factors.passkeys.authenticate(
            credential, str(state.get("challenge", "")), expected_user=session.user.user_id
        )
    except PasskeyError as exc:
        _failed(sign_in, request, session.user.username, 401)
        return await _again(
            state, session, str(exc), 401, request, browser, interactions, clients, factors
        )
    started = await sessions.start_for(
        session.user.user_id, PHR, replacing=session.record.session_id
    )
    if started is None:
        return browser.message(START_AGAIN, "Your account is not available.")
    secret, raised = started
    return await _continue(
        request, state, raised, secret, browser, interactions, clients, flow, factors
    )


@router.post("/login/passkey-signin")
async def login_passkey_signin(
    request: Request,
    browser: Pages,
    interactions: Interactions,
    clients: Resumed,
    sessions: Sessions,
    flow: Flow,
    factors: Factors,
    sign_in: SignInDep,
) -> Response:
    """A passkey alone (usernameless): the credential names the user."""
    try:
        pairs = await form_pairs(request)
        state = await interactions.open(
            "passkey-signin", single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
    except OAuthError as exc:
        return browser.message(START_AGAIN, exc.description)
    credential = (single(pairs, "credential") or "")[:MAX_CREDENTIAL]
    try:
        user_id = await factors.passkeys.authenticate(credential, str(state.get("challenge", "")))
    except PasskeyError as exc:
        _failed(sign_in, request, "", 401)  # no username: the passkey named nobody we know
        return browser.message("The passkey was not accepted", str(exc), 401)
    started = await sessions.start_for(user_id, PHR)
    if started is None:
        return browser.message("The passkey was not accepted", "This account is disabled.", 401)
    secret, session = started
    return await _continue(
        request, state, session, secret, browser, interactions, clients, flow, factors
    )


@router.get("/assets/passkeys.js")
async def passkeys_script() -> Response:
    return Response(
        SCRIPT.read_bytes(),
        media_type="text/javascript",
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )
