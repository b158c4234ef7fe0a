"""Browser-facing pages: /authorize, sign-in, consent (OIDC Core §3.1.2)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.records import ClientRecord
from tokenward.deploy.wiring import Services
from tokenward.oauth.authorize import AuthorizationRequest, ErrorPage, RedirectError
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.flow import Redirect, ShowLogin, Step
from tokenward.ops.refusals import log_refusal
from tokenward.server.edge import client_ip
from tokenward.server.pages import Browser
from tokenward.server.routes.device import device_after_login
from tokenward.server.signin import attempt_sign_in, form_pairs, single


def router(services: Services) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    browser = Browser(services.settings.issuer, services.csrf)
    flow = services.flow

    async def render(step: Step, client: ClientRecord, request: Request, **extra: Any) -> Response:
        if isinstance(step, Redirect):
            return browser.redirect(step.location)
        csrf = browser.csrf(request)
        if isinstance(step, ShowLogin):
            sealed = services.interactions.seal(
                "login", {"authorize": step.request.to_dict()}, csrf
            )
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
        sealed = services.interactions.seal("consent", state, csrf)
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

    async def authorize(request: Request, pairs: list[tuple[str, str]]) -> Response:
        try:
            auth_request, client = await services.authorization.validate(pairs)
            session = await services.sessions.current(browser.session_of(request))
            return await render(
                await flow.next_step(auth_request, client, session), client, request
            )
        except ErrorPage as exc:
            refused(request, pairs, "invalid_request", exc.description)
            return browser.message("This sign-in link is not valid", exc.description)
        except RedirectError as exc:
            refused(request, pairs, exc.error.error, exc.error.description)
            return browser.redirect(exc.location)

    def refused(
        request: Request, pairs: list[tuple[str, str]], error: str, description: str
    ) -> None:
        client_id = next((value for name, value in pairs if name == "client_id"), None)
        log_refusal(
            "/authorize", error, description, client_id=client_id, client_ip=client_ip(request)
        )

    @api.get("/authorize")
    async def authorize_get(request: Request) -> Response:
        try:
            pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
        except ValueError:  # more than 64 fields
            return browser.message("This sign-in link is not valid", "It has too many parameters.")
        return await authorize(request, pairs)

    @api.post("/authorize")
    async def authorize_post(request: Request) -> Response:  # OIDC Core §3.1.2.1: POST allowed
        return await authorize(request, await form_pairs(request))

    async def resume(state: dict[str, Any]) -> tuple[AuthorizationRequest, ClientRecord]:
        auth_request = AuthorizationRequest.from_dict(state["authorize"])
        client = await services.stores.clients.get(auth_request.client_id)
        if client is None or client.disabled:
            raise ErrorPage("The application is no longer available.")
        return auth_request, client

    @api.post("/login")
    async def login(request: Request) -> Response:
        try:
            pairs = await form_pairs(request)
            state = await services.interactions.open(
                "login", single(pairs, "interaction"), browser.csrf_cookie_of(request)
            )
        except OAuthError as exc:
            return browser.message("Please start again", exc.description)
        if "device" in state:
            return await device_after_login(services, browser, request, state, pairs)
        try:
            auth_request, client = await resume(state)
        except ErrorPage as exc:
            return browser.message("Please start again", exc.description)
        attempt = await attempt_sign_in(services, request, pairs)
        if attempt.session is None or attempt.cookie_secret is None:
            return await render(
                ShowLogin(auth_request),
                client,
                request,
                status=attempt.status,
                username=single(pairs, "username") or "",
                error=attempt.error,
            )
        session, secret = attempt.session, attempt.cookie_secret
        try:
            step = await flow.next_step(auth_request, client, session, signed_in_now=True)
            response = await render(step, client, request)
        except RedirectError as exc:
            response = browser.redirect(exc.location)
        browser.set_session(response, secret)
        return response

    @api.post("/consent")
    async def consent(request: Request) -> Response:
        try:
            pairs = await form_pairs(request)
            state = await services.interactions.open(
                "consent", single(pairs, "interaction"), browser.csrf_cookie_of(request)
            )
            auth_request, client = await resume(state)
        except (OAuthError, ErrorPage) as exc:
            return browser.message(
                "Please start again", getattr(exc, "description", "The form expired.")
            )
        session = await services.sessions.current(browser.session_of(request))
        if session is None or session.user.user_id != state["user_id"]:
            return browser.message("Please start again", "Your session ended; sign in again.")
        if single(pairs, "decision") != "approve":
            return browser.redirect(flow.denied(auth_request).location)
        await flow.record_consent(auth_request, session)
        try:
            step = await flow.next_step(
                auth_request, client, session, signed_in_now=True, consented_now=True
            )
        except RedirectError as exc:
            return browser.redirect(exc.location)
        return await render(step, client, request)

    return api
