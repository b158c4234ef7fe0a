"""What the server edge needs from the composition root, as a Protocol: the root's `Services`
satisfies it structurally, so server/ never imports the root (nor the storage adapters it
picks). Read-only properties, so a subtype or a mutable attribute satisfies each."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tokenward.config import Settings
    from tokenward.core.lifecycle import Background
    from tokenward.core.throttle import SignInThrottle
    from tokenward.guard import Validator
    from tokenward.monitor.pipeline import Monitor
    from tokenward.oauth.authorize import AuthorizationValidator
    from tokenward.oauth.csrf import CsrfTokens
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
    from tokenward.services.admin_access import AdminAccess
    from tokenward.services.admin_actions import AdminActions
    from tokenward.services.authorize_clients import ResumedClients
    from tokenward.services.console import ConsoleQueries
    from tokenward.services.device_approval import DeviceApproval
    from tokenward.services.logout import Logout
    from tokenward.services.portal import DeveloperApps
    from tokenward.services.registration import ClientRegistration
    from tokenward.services.second_factors import SecondFactors
    from tokenward.services.shared_signals import SharedSignals
    from tokenward.services.signin import PasswordSignIn
    from tokenward.services.userinfo import UserClaims
    from tokenward.tokens.key_manager import KeyManager


class ProbedStores(Protocol):
    """The storage connections /readyz probes (None: not configured)."""

    @property
    def engine(self) -> AsyncEngine | None: ...

    @property
    def redis(self) -> Redis | None: ...


class ServerParts(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def stores(self) -> ProbedStores: ...
    @property
    def keys(self) -> KeyManager: ...
    @property
    def revocations(self) -> Background: ...  # the revocation feed, followed while serving
    @property
    def validator(self) -> Validator: ...
    @property
    def token_endpoint(self) -> TokenEndpoint: ...
    @property
    def introspector(self) -> Introspector: ...
    @property
    def revoker(self) -> Revoker: ...
    @property
    def sessions(self) -> SessionManager: ...
    @property
    def interactions(self) -> InteractionSealer: ...
    @property
    def csrf(self) -> CsrfTokens: ...
    @property
    def authorization(self) -> AuthorizationValidator: ...
    @property
    def pushed_authorization(self) -> PushedAuthorization: ...
    @property
    def flow(self) -> AuthorizationFlow: ...
    @property
    def device(self) -> DeviceAuthorization: ...
    @property
    def login_throttle(self) -> SignInThrottle: ...
    @property
    def userinfo(self) -> Validator: ...
    @property
    def monitor(self) -> Monitor: ...
    @property
    def revocation_publisher(self) -> RevocationPublisher: ...
    @property
    def admin_actions(self) -> AdminActions: ...
    @property
    def admin_access(self) -> AdminAccess: ...
    @property
    def console(self) -> ConsoleQueries: ...
    @property
    def sign_in(self) -> PasswordSignIn: ...
    @property
    def user_claims(self) -> UserClaims: ...
    @property
    def logout(self) -> Logout: ...
    @property
    def device_approval(self) -> DeviceApproval: ...
    @property
    def resumed_clients(self) -> ResumedClients: ...
    @property
    def shared_signals(self) -> SharedSignals: ...
    @property
    def registration(self) -> ClientRegistration: ...  # RFC 7591/7592
    @property
    def second_factors(self) -> SecondFactors: ...
    @property
    def portal(self) -> DeveloperApps | None: ...  # /portal (docs/portal.md); None: off
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def metrics(self) -> ServerMetrics: ...

    def metadata(self, *, openid: bool) -> dict[str, Any]: ...
