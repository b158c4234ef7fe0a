"""OpenID Connect: UserInfo (OIDC Core §5.3) and RP-initiated logout (RP-Initiated Logout 1.0)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.errors import BearerError, InsufficientScope
from tokenward.core.records import Revocation, RevocationKind
from tokenward.deploy.wiring import Services
from tokenward.guard.challenge import challenge
from tokenward.oauth.authorize import redirect_to
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.logout import IdTokenHint, ends, read_id_token_hint
from tokenward.ops.refusals import log_refusal
from tokenward.server.edge import JSONResponse, client_ip
from tokenward.server.pages import Browser
from tokenward.server.signin import form_pairs

PROFILE_CLAIMS = {
    "profile": ("name", "preferred_username", "given_name", "family_name", "locale"),
    "email": ("email", "email_verified"),
}


def router(services: Services) -> APIRouter:
    api = APIRouter()
    browser = Browser(services.settings.issuer, services.csrf)

    def refuse(request: Request, error: BearerError, client_id: str | None = None) -> Response:
        log_refusal(
            "/userinfo",
            error.error or "missing_token",
            error.description,
            client_id=client_id,
            client_ip=client_ip(request),
        )
        rendered = challenge(error)
        return Response(rendered.body, rendered.status, headers=dict(rendered.headers))

    async def userinfo(request: Request) -> Response:
        header = request.headers.get("authorization")
        token = None
        try:
            token = await services.userinfo.authenticate_request(
                header,
                dpop_proof=request.headers.get("dpop"),
                method=request.method,
                url=services.settings.issuer.rstrip("/") + "/userinfo",
            )
            if "openid" not in token.scopes:
                raise InsufficientScope("the access token lacks the openid scope", scope="openid")
        except BearerError as error:
            return refuse(request, error, token.client_id if token is not None else None)
        user = await services.stores.users.get(token.sub)
        if user is None or user.disabled:
            return refuse(request, InvalidTokenForUser(), token.client_id)
        stored: dict[str, Any] = orjson.loads(user.claims or "{}")
        stored.setdefault("preferred_username", user.username)
        claims: dict[str, Any] = {"sub": user.user_id}
        for scope, names in PROFILE_CLAIMS.items():
            if scope in token.scopes:
                claims.update({name: stored[name] for name in names if name in stored})
        return JSONResponse(claims, headers={"cache-control": "no-store"})

    for method in ("GET", "POST"):  # one route each: one OpenAPI operation id each
        api.add_api_route(
            "/userinfo",
            userinfo,
            methods=[method],
            tags=["oidc"],
            summary="UserInfo (OIDC Core §5.3)",
            operation_id=f"userinfo_{method.lower()}",
        )

    async def logout(request: Request) -> Response:
        if request.method == "POST":
            try:
                pairs = await form_pairs(request)
            except OAuthError as exc:
                return browser.message("Sign-out failed", exc.description)
        else:
            try:
                pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=16)
            except ValueError:
                return browser.message("Sign-out failed", "The request has too many parameters.")
        params = {name: value for name, value in pairs if value}
        try:
            hint = await id_token_hint(params.get("id_token_hint"))
            client_id, target = await post_logout_target(params, hint)
        except ValueError as exc:
            return browser.message("Sign-out failed", str(exc))
        session = await services.sessions.current(browser.session_of(request))
        if session is not None:
            # Only the RP of this very session, or the user on our own form, may end it: a
            # hint for another session (or any other token we signed) asks the user (CSRF).
            if not (ends(hint, session) or confirmed(request, params)):
                return confirm_page(request, params, client_id)
            await end_session(session.record.session_id)
        response = (
            browser.redirect(target)
            if target
            else browser.message("Signed out", "You have been signed out.", 200, error=False)
        )
        browser.clear_session(response)
        return response

    async def id_token_hint(value: str | None) -> IdTokenHint | None:
        """The hint if it is an ID token of ours for a known client; ValueError if not ours."""
        if value is None:
            return None
        hint = read_id_token_hint(value, services.keys.verification_key, services.settings.issuer)
        if hint is None or await services.stores.clients.get(hint.client_id) is None:
            return None  # another kind of token, or for no client we know: proves nothing
        return hint

    def confirmed(request: Request, params: dict[str, str]) -> bool:
        """The user pressed "Sign out" on our confirmation page: a POST carrying the token of
        this browser's CSRF cookie (SameSite=Strict, so another site's form cannot send it),
        a token the server issued (compared in constant time by `csrf_ok`)."""
        return (
            request.method == "POST"
            and params.get("confirm") == "yes"
            and browser.csrf_ok(request, params.get("csrf"))
        )

    async def post_logout_target(
        params: dict[str, str], hint: IdTokenHint | None
    ) -> tuple[str | None, str | None]:
        """(the client, where to send the browser afterwards); ValueError if that is not allowed."""
        uri = params.get("post_logout_redirect_uri")
        client_id = params.get("client_id")
        if hint is not None:
            if client_id is not None and client_id != hint.client_id:  # §2: they must agree
                raise ValueError("The id_token_hint was issued to another application.")
            client_id = hint.client_id
        if uri is None:
            return client_id, None
        client = await services.stores.clients.get(client_id) if client_id else None
        if client is None or uri not in client.post_logout_redirect_uris:  # exact match
            raise ValueError("The post_logout_redirect_uri is not registered for this application.")
        return client_id, redirect_to(uri, {"state": params.get("state")})

    def confirm_page(request: Request, params: dict[str, str], client_id: str | None) -> Response:
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

    async def end_session(session_id: str) -> None:
        record = await services.sessions.end(session_id)
        if record is None:
            return
        now = services.clock()
        keep = (
            services.settings.refresh_token_lifetime
            + services.keys.keyring.policy.max_token_lifetime
        )
        # Every token and refresh family carrying this sid stops working (watermark).
        await services.revocations.revoke(
            Revocation(RevocationKind.SESSION, session_id, now, now + keep)
        )

    api.add_api_route("/logout", logout, methods=["GET", "POST"], include_in_schema=False)
    return api


class InvalidTokenForUser(BearerError):
    error = "invalid_token"
    status = 401

    def __init__(self) -> None:
        super().__init__("the token's user no longer exists or is disabled")
