"""OpenID Connect: UserInfo (OIDC Core §5.3) and RP-initiated logout (RP-Initiated Logout 1.0)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.guard.errors import BearerError, InsufficientScope, challenge
from tokenward.oauth.authorize import redirect_to
from tokenward.oauth.errors import OAuthError
from tokenward.server.edge import JSONResponse
from tokenward.server.pages import Browser
from tokenward.server.signin import form_pairs
from tokenward.store.records import Revocation, RevocationKind
from tokenward.tokens.errors import JoseError
from tokenward.tokens.jws import payload_object, verify_compact
from tokenward.wiring import Services

PROFILE_CLAIMS = {
    "profile": ("name", "preferred_username", "given_name", "family_name", "locale"),
    "email": ("email", "email_verified"),
}


def router(services: Services) -> APIRouter:
    api = APIRouter()
    browser = Browser(services.settings.issuer, services.csrf)

    async def userinfo(request: Request) -> Response:
        header = request.headers.get("authorization")
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
            rendered = challenge(error)
            return Response(rendered.body, rendered.status, headers=dict(rendered.headers))
        user = await services.stores.users.get(token.sub)
        if user is None or user.disabled:
            rendered = challenge(InvalidTokenForUser())
            return Response(rendered.body, rendered.status, headers=dict(rendered.headers))
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
            pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=16)
        params = {name: value for name, value in pairs if value}
        try:
            target = await post_logout_target(params)
        except ValueError as exc:
            return browser.message("Sign-out failed", str(exc))
        confirmed = params.get("confirm") == "yes" and browser.csrf_ok(request, params.get("csrf"))
        if "id_token_hint" not in params and not confirmed:
            return confirm_page(request, params)  # no proof the RP asked: ask the user (CSRF)
        session = await services.sessions.current(browser.session_of(request))
        if session is not None:
            await end_session(session.record.session_id)
        response = (
            browser.redirect(target)
            if target
            else browser.message("Signed out", "You have been signed out.", 200, error=False)
        )
        browser.clear_session(response)
        return response

    async def post_logout_target(params: dict[str, str]) -> str | None:
        uri = params.get("post_logout_redirect_uri")
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if hint is not None:
            try:
                jws, _ = verify_compact(hint, services.keys.verification_key)
                claims = payload_object(jws)
            except JoseError:
                raise ValueError("The id_token_hint is not one of ours.") from None
            if claims.get("iss") != services.settings.issuer:
                raise ValueError("The id_token_hint is not one of ours.")
            aud = claims.get("aud")
            client_id = client_id or (aud if isinstance(aud, str) else None)
        if uri is None:
            return None
        client = await services.stores.clients.get(client_id) if client_id else None
        if client is None or uri not in client.post_logout_redirect_uris:  # exact match
            raise ValueError("The post_logout_redirect_uri is not registered for this application.")
        return redirect_to(uri, {"state": params.get("state")})

    def confirm_page(request: Request, params: dict[str, str]) -> Response:
        csrf = browser.csrf(request)
        fields = [
            (k, v)
            for k, v in params.items()
            if k in ("post_logout_redirect_uri", "client_id", "state")
        ]
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
