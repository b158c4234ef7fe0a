"""FastAPI dependency providers for the route modules: each hands a handler one part it needs,
read from `request.app.state`, which `create_app` fills. Handlers name these aliases in their
signatures (`flow: Flow`) instead of closing over the whole set of parts.

The providers are `async def` although they never await: FastAPI runs a plain `def` provider
in a worker thread, a thread hop per provider per request (an eighth of the token endpoint's
time under load, docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from tokenward.config import Settings
from tokenward.core.throttle import SignInThrottle
from tokenward.guard import Validator
from tokenward.monitor.pipeline import Monitor
from tokenward.oauth.authorize import AuthorizationValidator
from tokenward.oauth.device import DeviceAuthorization
from tokenward.oauth.flow import AuthorizationFlow
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.introspection import Introspector
from tokenward.oauth.par import PushedAuthorization
from tokenward.oauth.revocation import Revoker
from tokenward.oauth.revocation_publisher import RevocationPublisher
from tokenward.oauth.sessions import SessionManager
from tokenward.oauth.token_endpoint import TokenEndpoint
from tokenward.ops.metrics import ServerMetrics
from tokenward.ops.readiness import Readiness
from tokenward.server.console import ConsolePages
from tokenward.server.pages import Browser
from tokenward.server.parts import ServerParts
from tokenward.services.admin_access import AdminAccess
from tokenward.services.admin_actions import AdminActions
from tokenward.services.authorize_clients import ResumedClients
from tokenward.services.console import ConsoleQueries
from tokenward.services.device_approval import DeviceApproval
from tokenward.services.logout import Logout
from tokenward.services.registration import ClientRegistration
from tokenward.services.second_factors import SecondFactors
from tokenward.services.shared_signals import SharedSignals
from tokenward.services.signin import PasswordSignIn
from tokenward.services.userinfo import UserClaims
from tokenward.tokens.key_manager import KeyManager

PARTS = "parts"  # app.state names, set by create_app
BROWSER = "browser"
READINESS = "readiness"
CONSOLE = "console"


async def parts(request: Request) -> ServerParts:
    found: ServerParts = getattr(request.app.state, PARTS)
    return found


async def _browser(request: Request) -> Browser:
    found: Browser = getattr(request.app.state, BROWSER)
    return found


async def _readiness(request: Request) -> Readiness:
    found: Readiness = getattr(request.app.state, READINESS)
    return found


async def _console_pages(request: Request) -> ConsolePages:
    found: ConsolePages = getattr(request.app.state, CONSOLE)
    return found


Parts = Annotated[ServerParts, Depends(parts)]


async def _settings(p: Parts) -> Settings:
    return p.settings


async def _keys(p: Parts) -> KeyManager:
    return p.keys


async def _token_endpoint(p: Parts) -> TokenEndpoint:
    return p.token_endpoint


async def _introspector(p: Parts) -> Introspector:
    return p.introspector


async def _revoker(p: Parts) -> Revoker:
    return p.revoker


async def _sessions(p: Parts) -> SessionManager:
    return p.sessions


async def _interactions(p: Parts) -> InteractionSealer:
    return p.interactions


async def _authorization(p: Parts) -> AuthorizationValidator:
    return p.authorization


async def _pushed(p: Parts) -> PushedAuthorization:
    return p.pushed_authorization


async def _flow(p: Parts) -> AuthorizationFlow:
    return p.flow


async def _device(p: Parts) -> DeviceAuthorization:
    return p.device


async def _login_throttle(p: Parts) -> SignInThrottle:
    return p.login_throttle


async def _userinfo(p: Parts) -> Validator:
    return p.userinfo


async def _monitor(p: Parts) -> Monitor:
    return p.monitor


async def _publisher(p: Parts) -> RevocationPublisher:
    return p.revocation_publisher


async def _admin_actions(p: Parts) -> AdminActions:
    return p.admin_actions


async def _admin_access(p: Parts) -> AdminAccess:
    return p.admin_access


async def _console(p: Parts) -> ConsoleQueries:
    return p.console


async def _sign_in(p: Parts) -> PasswordSignIn:
    return p.sign_in


async def _user_claims(p: Parts) -> UserClaims:
    return p.user_claims


async def _logout(p: Parts) -> Logout:
    return p.logout


async def _device_approval(p: Parts) -> DeviceApproval:
    return p.device_approval


async def _resumed_clients(p: Parts) -> ResumedClients:
    return p.resumed_clients


async def _clock(p: Parts) -> Callable[[], float]:
    return p.clock


async def _shared_signals(p: Parts) -> SharedSignals:
    return p.shared_signals


async def _registration(p: Parts) -> ClientRegistration:
    return p.registration


async def _metrics(p: Parts) -> ServerMetrics:
    return p.metrics


Pages = Annotated[Browser, Depends(_browser)]
Ready = Annotated[Readiness, Depends(_readiness)]
Config = Annotated[Settings, Depends(_settings)]
Keys = Annotated[KeyManager, Depends(_keys)]
Tokens = Annotated[TokenEndpoint, Depends(_token_endpoint)]
Introspection = Annotated[Introspector, Depends(_introspector)]
Revocation = Annotated[Revoker, Depends(_revoker)]
Sessions = Annotated[SessionManager, Depends(_sessions)]
Interactions = Annotated[InteractionSealer, Depends(_interactions)]
Authorization = Annotated[AuthorizationValidator, Depends(_authorization)]
Pushed = Annotated[PushedAuthorization, Depends(_pushed)]
Flow = Annotated[AuthorizationFlow, Depends(_flow)]
Device = Annotated[DeviceAuthorization, Depends(_device)]
Throttle = Annotated[SignInThrottle, Depends(_login_throttle)]
UserInfoValidator = Annotated[Validator, Depends(_userinfo)]
MonitorDep = Annotated[Monitor, Depends(_monitor)]
Publisher = Annotated[RevocationPublisher, Depends(_publisher)]
Actions = Annotated[AdminActions, Depends(_admin_actions)]
Access = Annotated[AdminAccess, Depends(_admin_access)]
Queries = Annotated[ConsoleQueries, Depends(_console)]
Console = Annotated[ConsolePages, Depends(_console_pages)]
SignInDep = Annotated[PasswordSignIn, Depends(_sign_in)]
Claims = Annotated[UserClaims, Depends(_user_claims)]
LogoutDep = Annotated[Logout, Depends(_logout)]
Approval = Annotated[DeviceApproval, Depends(_device_approval)]
Resumed = Annotated[ResumedClients, Depends(_resumed_clients)]
Clock = Annotated[Callable[[], float], Depends(_clock)]
Registration = Annotated[ClientRegistration, Depends(_registration)]
Metrics = Annotated[ServerMetrics, Depends(_metrics)]
Signals = Annotated[SharedSignals, Depends(_shared_signals)]


async def _second_factors(p: Parts) -> SecondFactors:
    return p.second_factors


Factors = Annotated[SecondFactors, Depends(_second_factors)]
