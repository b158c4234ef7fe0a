"""Device authorization (RFC 8628): the device endpoint and the pages where users approve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.deploy.wiring import Services
from tokenward.oauth.device import display_user_code, normalise_user_code
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.sessions import ActiveSession
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.server.edge import JSONResponse, read_form, single_header
from tokenward.server.pages import Browser
from tokenward.server.signin import attempt_sign_in, form_pairs, single

BAD_CODE = "That code is not valid or has expired. Check your device and try again."


def _login_page(
    services: Services, browser: Browser, request: Request, user_code: str, **extra: Any
) -> Response:
    csrf = browser.csrf(request)
    sealed = services.interactions.seal("login", {"device": {"user_code": user_code}}, csrf)
    return browser.page(
        "login.html",
        extra.pop("status", 200),
        csrf,
        action="/login",
        interaction=sealed,
        client_name="your device",
        username="",
        **extra,
    )


def _code_page(
    services: Services,
    browser: Browser,
    request: Request,
    session: ActiveSession,
    user_code: str,
    **extra: Any,
) -> Response:
    csrf = browser.csrf(request)
    sealed = services.interactions.seal("device", {"user_id": session.user.user_id}, csrf)
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
    services: Services,
    browser: Browser,
    request: Request,
    state: dict[str, Any],
    pairs: list[tuple[str, str]],
) -> Response:
    user_code = str(state["device"].get("user_code", ""))[:32]
    attempt = await attempt_sign_in(services, request, pairs)
    if attempt.session is None or attempt.cookie_secret is None:
        return _login_page(
            services, browser, request, user_code, status=attempt.status, error=attempt.error
        )
    response = _code_page(services, browser, request, attempt.session, user_code)
    browser.set_session(response, attempt.cookie_secret)
    return response


def router(services: Services) -> APIRouter:
    api = APIRouter()
    browser = Browser(services.settings.issuer, services.csrf)
    limit = services.settings.max_body_bytes

    @api.post(
        "/device_authorization", summary="Device authorization (RFC 8628 §3.1)", tags=["oauth"]
    )
    async def device_authorization(request: Request) -> Response:
        form = await read_form(request, limit)
        body = await services.device.start(
            form.params, form.resources, single_header(request, "authorization")
        )
        return JSONResponse(body, headers=NO_STORE)

    @api.get("/device", include_in_schema=False)
    async def device_page(request: Request) -> Response:
        user_code = request.query_params.get("user_code", "")[:32]
        session = await services.sessions.current(browser.session_of(request))
        if session is None:
            return _login_page(services, browser, request, user_code)
        return _code_page(services, browser, request, session, user_code)

    async def checked(
        request: Request, kind: str
    ) -> tuple[list[tuple[str, str]], dict[str, Any], ActiveSession]:
        pairs = await form_pairs(request)
        state = await services.interactions.open(
            kind, single(pairs, "interaction"), browser.csrf_cookie_of(request)
        )
        session = await services.sessions.current(browser.session_of(request))
        if session is None or session.user.user_id != state["user_id"]:
            raise _SessionEnded
        return pairs, state, session

    @api.post("/device", include_in_schema=False)
    async def enter_code(request: Request) -> Response:
        try:
            pairs, _state, session = await checked(request, "device")
        except (OAuthError, _SessionEnded):
            return browser.message("Please start again", "The form expired or your session ended.")
        ip = request.client.host if request.client else "unknown"
        attempt = await services.login_throttle.attempt(f"device:{session.user.user_id}", ip)
        if attempt.wait is not None:
            return _code_page(
                services,
                browser,
                request,
                session,
                "",
                status=429,
                error="Too many wrong codes. Wait a few minutes and try again.",
            )
        code = normalise_user_code(single(pairs, "user_code") or "")
        record = await services.stores.devices.by_user_code(code) if code else None
        if record is None or record.status != "pending" or record.expires_at <= services.clock():
            return _code_page(services, browser, request, session, "", status=400, error=BAD_CODE)
        await services.login_throttle.forgive(attempt)  # a right code is no failure
        client = await services.stores.clients.get(record.client_id)
        csrf = browser.csrf(request)
        sealed = services.interactions.seal(
            "device-confirm", {"user_id": session.user.user_id, "user_code": code}, csrf
        )
        return browser.page(
            "device_confirm.html",
            200,
            csrf,
            action="/device/decision",
            interaction=sealed,
            client_name=(client.name or client.client_id) if client else record.client_id,
            user_code=display_user_code(code),
            scopes=sorted(record.scopes),
        )

    @api.post("/device/decision", include_in_schema=False)
    async def decide(request: Request) -> Response:
        try:
            pairs, state, session = await checked(request, "device-confirm")
        except (OAuthError, _SessionEnded):
            return browser.message("Please start again", "The form expired or your session ended.")
        approved = single(pairs, "decision") == "approve"
        done = await services.stores.devices.decide(
            state["user_code"],
            approved,
            session.user.user_id,
            session.record.session_id,
            session.record.auth_time,
            services.clock(),
        )
        if not done:
            return browser.message("Code expired", BAD_CODE)
        if approved:
            return browser.message(
                "Device connected", "You can return to your device now.", 200, error=False
            )
        return browser.message(
            "Request denied", "The device was not given access.", 200, error=False
        )

    return api


class _SessionEnded(Exception):
    pass
