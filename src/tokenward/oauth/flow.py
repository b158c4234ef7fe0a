"""What happens after a valid authorization request: sign in, consent, then the code.

OIDC Core §3.1.2.3: prompt=login and an exceeded max_age force a new sign-in; prompt=none
never shows a page and answers login_required / consent_required instead.

Assurance (core/assurance.py): the session must reach the strongest of the levels asked by
`acr_values`, the client's `min_acr` and the user's floor (who set up a second factor must use
it); when it does not, the user is asked for the missing factor. A client minimum the user cannot
reach (no passkey for a passkey-only client) is access_denied; `acr_values` the user cannot reach
are met as far as they can be, and the tokens' `acr` says how far (OIDC Core §3.1.2.1: they are
voluntary; a resource server that needs more refuses the token, RFC 9470).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tokenward.core.assurance import PWD, can_reach, satisfies, target
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


@dataclass(frozen=True, slots=True)
class ShowFactor:
    """Ask the signed-in user for a second factor that brings the session to `level`."""

    request: AuthorizationRequest
    session: ActiveSession
    level: str
    methods: frozenset[str]  # the user's factors (core/assurance.py TOTP, PASSKEY)


Step = ShowLogin | ShowFactor | ShowConsent | Redirect


class FactorMethods(Protocol):
    async def methods(self, user_id: str) -> frozenset[str]:
        """The second factors the user has set up (services/factors.FactorCatalogue)."""
        ...


class _NoFactors:
    async def methods(self, user_id: str) -> frozenset[str]:
        return frozenset()


class AuthorizationFlow:
    def __init__(
        self,
        codes: CodeStore,
        consents: ConsentStore,
        issuer: str,
        clock: Callable[[], float] = time.time,
        profiles: Profiles | None = None,
        factors: FactorMethods | None = None,
    ) -> None:
        self._profiles = profiles or Profiles()
        self._factors = factors if factors is not None else _NoFactors()
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
        factor = await self._missing_factor(request, client, session)
        if factor is not None:
            if "none" in request.prompt:
                raise self._error(LoginRequired("a second factor is required"), request)
            return factor
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

    async def _missing_factor(
        self, request: AuthorizationRequest, client: ClientRecord, session: ActiveSession
    ) -> ShowFactor | None:
        methods = await self._factors.methods(session.user.user_id)
        if not can_reach(methods, client.min_acr):
            raise self._error(
                AccessDenied("the application requires a second factor the user has not set up"),
                request,
            )
        level = target(methods, client.min_acr, request.acr_values)
        # A session from before levels were recorded was a password sign-in.
        if level is None or satisfies(session.record.acr or PWD, level):
            return None
        return ShowFactor(request, session, level, methods)

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
