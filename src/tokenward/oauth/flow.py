"""What happens after a valid authorization request: sign in, consent, then the code.

OIDC Core §3.1.2.3: prompt=login and an exceeded max_age force a new sign-in; prompt=none
never shows a page and answers login_required / consent_required instead.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokenward.core.ports import CodeStore, ConsentStore
from tokenward.core.records import ClientRecord, CodeRecord
from tokenward.oauth.authorize import AuthorizationRequest, RedirectError, redirect_to
from tokenward.oauth.errors import AccessDenied, ConsentRequired, LoginRequired
from tokenward.oauth.grants.authorization_code import code_digest
from tokenward.oauth.profiles import Profiles
from tokenward.oauth.sessions import ActiveSession


@dataclass(frozen=True, slots=True)
class ShowLogin:
    request: AuthorizationRequest


@dataclass(frozen=True, slots=True)
class ShowConsent:
    request: AuthorizationRequest
    session: ActiveSession


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    status: int = 302  # the request's profile says: 303 under fapi2


Step = ShowLogin | ShowConsent | Redirect


class AuthorizationFlow:
    def __init__(
        self,
        codes: CodeStore,
        consents: ConsentStore,
        issuer: str,
        clock: Callable[[], float] = time.time,
        profiles: Profiles | None = None,
    ) -> None:
        self._profiles = profiles or Profiles()
        self._codes = codes
        self._consents = consents
        self._issuer = issuer
        self._clock = clock

    async def next_step(
        self,
        request: AuthorizationRequest,
        client: ClientRecord,
        session: ActiveSession | None,
        *,
        signed_in_now: bool = False,
        consented_now: bool = False,
    ) -> Step:
        if session is None or (not signed_in_now and self._needs_fresh_login(request, session)):
            if "none" in request.prompt:
                raise self._error(LoginRequired("the user must sign in"), request)
            return ShowLogin(request)
        if not consented_now and await self._needs_consent(request, client, session):
            if "none" in request.prompt:
                raise self._error(
                    ConsentRequired("the user must approve this application"), request
                )
            return ShowConsent(request, session)
        status = self._profiles.named(request.profile).redirect_status
        return Redirect(await self._issue_code(request, session), status)

    async def record_consent(self, request: AuthorizationRequest, session: ActiveSession) -> None:
        await self._consents.grant(
            session.user.user_id, request.client_id, frozenset(request.scopes)
        )

    def denied(self, request: AuthorizationRequest) -> RedirectError:
        return self._error(AccessDenied("the user declined"), request)

    def _needs_fresh_login(self, request: AuthorizationRequest, session: ActiveSession) -> bool:
        if "login" in request.prompt:
            return True
        age = self._clock() - session.record.auth_time
        return request.max_age is not None and age > request.max_age

    async def _needs_consent(
        self, request: AuthorizationRequest, client: ClientRecord, session: ActiveSession
    ) -> bool:
        if client.skip_consent:
            return False
        if "consent" in request.prompt:
            return True
        granted = await self._consents.granted(session.user.user_id, client.client_id)
        return not set(request.scopes) <= granted

    async def _issue_code(self, request: AuthorizationRequest, session: ActiveSession) -> str:
        code = secrets.token_urlsafe(32)
        now = self._clock()
        await self._codes.save(
            CodeRecord(
                digest=code_digest(code),
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                redirect_uri_given=request.redirect_uri_given,
                code_challenge=request.code_challenge,
                scopes=frozenset(request.scopes),
                audience=request.audience,
                user_id=session.user.user_id,
                session_id=session.record.session_id,
                auth_time=session.record.auth_time,
                expires_at=now + self._profiles.named(request.profile).code_lifetime,
                nonce=request.nonce,
                acr=session.record.acr,
                dpop_jkt=request.dpop_jkt,
            )
        )
        return redirect_to(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self._issuer}
        )

    def _error(
        self, error: AccessDenied | LoginRequired | ConsentRequired, request: AuthorizationRequest
    ) -> RedirectError:
        status = self._profiles.named(request.profile).redirect_status
        return RedirectError(error, request.redirect_uri, request.state, self._issuer, status)
