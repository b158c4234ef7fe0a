"""OpenID Connect: UserInfo (OIDC Core §5.3) and RP-initiated logout (RP-Initiated Logout 1.0)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.errors import BearerError, InsufficientScope
from tokenward.guard.challenge import challenge
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.logout import ends
from tokenward.ops.refusals import log_refusal
from tokenward.resource.asgi import certificate_of
from tokenward.server.dependencies import (
    Claims,
    Config,
    LogoutDep,
    Pages,
    Sessions,
    UserInfoValidator,
)
from tokenward.server.edge import JSONResponse, client_ip
from tokenward.server.pages import Browser
from tokenward.server.signin import form_pairs

router = APIRouter()


def _refuse(request: Request, error: BearerError, client_id: str | None = None) -> Response:
    log_refusal(
        "/userinfo",
        error.error or "missing_token",
        error.description,
        client_id=client_id,
        client_ip=client_ip(request),
    )
    rendered = challenge(error)
    return Response(rendered.body, rendered.status, headers=dict(rendered.headers))


async def userinfo(
    request: Request, validator: UserInfoValidator, user_claims: Claims, settings: Config
) -> Response:
    header = request.headers.get("authorization")
    token = None
    try:
        token = await validator.authenticate_request(
            header,
            dpop_proof=request.headers.get("dpop"),
            method=request.method,
            url=settings.issuer.rstrip("/") + "/userinfo",
            certificate=certificate_of(request.scope),
        )
        if "openid" not in token.scopes:
            raise InsufficientScope("the access token lacks the openid scope", scope="openid")
    except BearerError as error:
        return _refuse(request, error, token.client_id if token is not None else None)
    claims = await user_claims.for_token(token)
    if claims is None:
        return _refuse(request, InvalidTokenForUser(), token.client_id)
    return JSONResponse(claims, headers={"cache-control": "no-store"})


for _method in ("GET", "POST"):  # one route each: one OpenAPI operation id each
    router.add_api_route(
        "/userinfo",
        userinfo,
        methods=[_method],
        tags=["oidc"],
        summary="UserInfo (OIDC Core §5.3)",
        operation_id=f"userinfo_{_method.lower()}",
    )


async def _logout_params(request: Request) -> dict[str, str]:
    """The request's non-empty parameters (form or query); ValueError says what is wrong."""
    if request.method == "POST":
        try:
            pairs = await form_pairs(request)
        except OAuthError as exc:
            raise ValueError(exc.description) from None
    else:
        try:
            pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=16)
        except ValueError:
            raise ValueError("The request has too many parameters.") from None
    return {name: value for name, value in pairs if value}


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
async def logout(
    request: Request, browser: Pages, sessions: Sessions, service: LogoutDep
) -> Response:
    try:
        params = await _logout_params(request)
        hint = await service.id_token_hint(params.get("id_token_hint"))
        client_id, target = await service.post_logout_target(params, hint)
    except ValueError as exc:
        return browser.message("Sign-out failed", str(exc))
    session = await sessions.current(browser.session_of(request))
    if session is not None:
        # Only the RP of this very session, or the user on our own form, may end it: a
        # hint for another session (or any other token we signed) asks the user (CSRF).
        if not (ends(hint, session) or _confirmed(browser, request, params)):
            return _confirm_page(browser, request, params, client_id)
        await service.end_session(session.record.session_id)
    response = (
        browser.redirect(target)
        if target
        else browser.message("Signed out", "You have been signed out.", 200, error=False)
    )
    browser.clear_session(response)
    return response


def _confirmed(browser: Browser, request: Request, params: dict[str, str]) -> bool:
    """The user pressed "Sign out" on our confirmation page: a POST carrying the token of
    this browser's CSRF cookie (SameSite=Strict, so another site's form cannot send it),
    a token the server issued (compared in constant time by `csrf_ok`)."""
    return (
        request.method == "POST"
        and params.get("confirm") == "yes"
        and browser.csrf_ok(request, params.get("csrf"))
    )


def _confirm_page(
    browser: Browser, request: Request, params: dict[str, str], client_id: str | None
) -> Response:
    csrf = browser.csrf(request)
    fields = [(k, v) for k, v in params.items() if k in ("post_logout_redirect_uri", "state")]
    if client_id is not None:  # also when it came from the hint, which the form leaves out
        fields.append(("client_id", client_id))
    return browser.page(
        "message.html",
        200,
        csrf,
        title="Sign out?",
        message="Do you want to sign out?",
        error=False,
        form_action="/logout",
        form_fields=[*fields, ("confirm", "yes"), ("csrf", csrf)],
        button="Sign out",
    )


class InvalidTokenForUser(BearerError):
    error = "invalid_token"
    status = 401

    def __init__(self) -> None:
        super().__init__("the token's user no longer exists or is disabled")
