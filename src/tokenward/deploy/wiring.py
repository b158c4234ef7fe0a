"""The composition root: reads the settings once and builds every service from them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenward.config import Settings, rate_limit
from tokenward.core.ports import (
    AccessTokenStore,
    ClientStore,
    CodeStore,
    ConsentStore,
    DeviceStore,
    GrantStore,
    InitialAccessTokens,
    KeyStore,
    Passkeys,
    PushedRequestStore,
    RecoveryCodes,
    RegistrationAccessTokens,
    RevocationStore,
    SessionParticipants,
    SessionStore,
    SetQueue,
    SsfStreams,
    TokenLineage,
    TotpFactors,
    UserStore,
)
from tokenward.core.ratelimits import RatePolicy
from tokenward.core.throttle import SignInThrottle
from tokenward.datadir import secure_file, secure_sqlite
from tokenward.deploy.monitor_wiring import build_monitor
from tokenward.deploy.namespace import Namespace
from tokenward.deploy.portal import load_catalogue
from tokenward.gateway.ratelimit import MemoryRateLimiter
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.monitor.config import MonitorSettings
from tokenward.monitor.pipeline import Monitor
from tokenward.oauth.authorize import AuthorizationValidator
from tokenward.oauth.client_auth import ClientAuthenticator, ReplayCache, SecretHasher
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.csrf import CsrfTokens
from tokenward.oauth.device import DeviceAuthorization, DeviceCodeGrant
from tokenward.oauth.discovery import metadata
from tokenward.oauth.exchange_tokens import ExchangeTokenReader, TrustedIssuer
from tokenward.oauth.flow import AuthorizationFlow
from tokenward.oauth.grants.authorization_code import AuthorizationCodeGrant
from tokenward.oauth.grants.client_credentials import ClientCredentialsGrant
from tokenward.oauth.grants.refresh_token import RefreshTokenGrant
from tokenward.oauth.grants.token_exchange import TokenExchangeGrant
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.introspection import Introspector
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.outbound import GuardedTransport
from tokenward.oauth.par import PushedAuthorization
from tokenward.oauth.profiles import Profiles, profile_named
from tokenward.oauth.refresh import RefreshAdmin, RefreshTokens
from tokenward.oauth.request_object import RequestObjects
from tokenward.oauth.request_uri import RequestUris
from tokenward.oauth.revocation import Revoker
from tokenward.oauth.revocation_publisher import RevocationPublisher
from tokenward.oauth.sessions import SessionManager
from tokenward.oauth.software_statements import SoftwareStatements, StatementIssuer
from tokenward.oauth.ssf.backchannel import BackChannelLogout
from tokenward.oauth.ssf.delivery import Deliveries
from tokenward.oauth.ssf.poll import PollEndpoint
from tokenward.oauth.ssf.signing import TokenSigner
from tokenward.oauth.ssf.streams import StreamManager
from tokenward.oauth.ssf.transmitter import Transmitter
from tokenward.oauth.token_endpoint import TokenEndpoint
from tokenward.oauth.user_tokens import UserTokenMinter
from tokenward.ops.metrics import ServerMetrics
from tokenward.services.admin_access import AdminAccess
from tokenward.services.admin_actions import AdminActions
from tokenward.services.authorize_clients import ResumedClients
from tokenward.services.clients import ClientAdmin
from tokenward.services.console import ConsoleQueries
from tokenward.services.demo import DemoAccounts
from tokenward.services.device_approval import DeviceApproval
from tokenward.services.factors import FactorCatalogue
from tokenward.services.initial_tokens import InitialTokenAdmin
from tokenward.services.logout import Logout
from tokenward.services.passkeys import PasskeyService
from tokenward.services.portal import DeveloperApps, PortalSettings
from tokenward.services.recovery_codes import RecoveryCodeService
from tokenward.services.registration import (
    ClientRegistration,
    RateLimiter,
    RegistrationPolicy,
)
from tokenward.services.revoking import Watermarks
from tokenward.services.second_factors import SecondFactors
from tokenward.services.shared_signals import RECEIVE, SharedSignals, poll_url
from tokenward.services.signin import PasswordSignIn
from tokenward.services.ssf_receiver import SetReceiver
from tokenward.services.ssf_receiver import Transmitter as SsfTransmitter
from tokenward.services.totp import TotpService
from tokenward.services.userinfo import UserClaims
from tokenward.services.users import UserAdmin
from tokenward.store import memory, memory_flows, sql
from tokenward.store.cached_clients import CachedClientStore
from tokenward.store.memory_factors import (
    MemoryPasskeys,
    MemoryRecoveryCodes,
    MemoryTotpFactors,
)
from tokenward.store.memory_participants import MemorySessionParticipants
from tokenward.store.memory_registration import (
    MemoryInitialAccessTokens,
    MemoryRegistrationAccessTokens,
)
from tokenward.store.memory_signin_throttle import MemorySignInThrottle
from tokenward.store.memory_ssf import MemorySetQueue, MemorySsfStreams
from tokenward.store.redis_alert_claims import RedisAlertClaims
from tokenward.store.redis_blocklist import RedisBlocklist
from tokenward.store.redis_client import connect
from tokenward.store.redis_event_relay import EventConsumer
from tokenward.store.redis_ratelimit import RedisRateLimiter
from tokenward.store.redis_replay import RedisReplayCache
from tokenward.store.redis_signin_throttle import RedisSignInThrottle
from tokenward.store.redis_windows import RedisWindows
from tokenward.store.revocation_feed import RevocationFeed, Siblings
from tokenward.tokens.dpop import DpopNonces, DpopVerifier
from tokenward.tokens.id_token import IdTokenSigner
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.key_manager import KeyManager
from tokenward.tokens.keyring import KeyPolicy
from tokenward.tokens.opaque import OpaqueAccessTokenStrategy, StoreOpaqueResolver
from tokenward.tokens.remote_jwks import RemoteJwks
from tokenward.tokens.sealing import KeySealer, derive_subkey
from tokenward.tokens.signing_choice import SigningPolicy

Clock = Callable[[], float]


@dataclass
class StoreSet:
    keys: KeyStore
    revocations: RevocationStore
    access_tokens: AccessTokenStore
    clients: ClientStore
    users: UserStore
    replay: ReplayCache
    sessions: SessionStore
    codes: CodeStore
    grants: GrantStore
    devices: DeviceStore
    consents: ConsentStore
    lineage: TokenLineage  # the grant store again: which family a token descends from
    pushed: PushedRequestStore  # PAR (RFC 9126): request_uri -> the pushed request, once
    redis: Redis | None = None  # scale-out: pub/sub fan-out and shared hot state
    engine: AsyncEngine | None = None  # the SQL stores' engine, for readiness probes
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    # Continuous access evaluation: back-channel logout's recipients, the Shared Signals streams
    # and the SETs waiting for them (docs/continuous-access.md).
    participants: SessionParticipants = field(default_factory=MemorySessionParticipants)
    ssf_streams: SsfStreams = field(default_factory=MemorySsfStreams)
    set_queue: SetQueue = field(default_factory=MemorySetQueue)
    # Dynamic client registration (RFC 7591/7592): initial and registration access tokens.
    initial_tokens: InitialAccessTokens = field(default_factory=MemoryInitialAccessTokens)
    registration_tokens: RegistrationAccessTokens = field(
        default_factory=MemoryRegistrationAccessTokens
    )
    # Second factors (docs/second-factors.md).
    totp_factors: TotpFactors = field(default_factory=MemoryTotpFactors)
    recovery_codes: RecoveryCodes = field(default_factory=MemoryRecoveryCodes)
    passkeys: Passkeys = field(default_factory=MemoryPasskeys)
    # The sign-in throttle in the database: what `serve --workers N` counts in without Redis.
    signin: SignInThrottle | None = None

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


def memory_stores(clock: Clock = time.time) -> StoreSet:
    return StoreSet(
        keys=memory.MemoryKeyStore(),
        revocations=memory.MemoryRevocationStore(),
        access_tokens=memory.MemoryAccessTokenStore(clock),
        clients=memory.MemoryClientStore(),
        users=memory.MemoryUserStore(),
        replay=memory.MemoryReplayCache(clock),
        **memory_flow_stores(clock),
    )


def memory_flow_stores(clock: Clock = time.time) -> dict[str, Any]:
    grants = memory_flows.MemoryGrantStore()
    return {
        "sessions": memory_flows.MemorySessionStore(),
        "codes": memory_flows.MemoryCodeStore(grants),
        "grants": grants,
        "lineage": grants,
        "devices": memory_flows.MemoryDeviceStore(),
        "consents": memory_flows.MemoryConsentStore(),
        "pushed": memory_flows.MemoryPushedRequestStore(clock),
    }


@dataclass
class Services:
    settings: Settings
    stores: StoreSet
    keys: KeyManager
    hasher: SecretHasher
    revocations: RevocationFeed
    validator: Validator  # for this server's own protected APIs (audience = settings.audience)
    token_endpoint: TokenEndpoint
    introspector: Introspector
    revoker: Revoker
    sessions: SessionManager
    interactions: InteractionSealer
    csrf: CsrfTokens  # the browser pages' and the console's CSRF cookies: issued here only
    authorization: AuthorizationValidator
    pushed_authorization: PushedAuthorization  # POST /par (RFC 9126)
    flow: AuthorizationFlow
    device: DeviceAuthorization
    login_throttle: SignInThrottle
    userinfo: Validator  # any audience; /userinfo requires the openid scope itself
    id_tokens: IdTokenSigner
    monitor: Monitor  # usage events, detectors, alerts; `monitor.blocklist.is_blocked(ip)`
    revocation_publisher: RevocationPublisher  # GET /revocations, for remote resource servers
    # Application services (tokenward/services/): what the edges and the CLI call.
    client_admin: ClientAdmin
    user_admin: UserAdmin
    watermarks: Watermarks  # the operator's revocations
    admin_actions: AdminActions  # the console's and the admin API's actions, audited
    admin_access: AdminAccess
    console: ConsoleQueries
    sign_in: PasswordSignIn
    user_claims: UserClaims
    logout: Logout
    device_approval: DeviceApproval
    resumed_clients: ResumedClients
    demo: DemoAccounts
    shared_signals: SharedSignals  # SSF transmitter and receiver, back-channel logout
    registration: ClientRegistration  # RFC 7591/7592 at /register
    initial_tokens: InitialTokenAdmin  # the operator's initial access tokens for /register
    second_factors: SecondFactors  # TOTP, recovery codes, passkeys (docs/second-factors.md)
    portal: DeveloperApps | None = None  # /portal (docs/portal.md); None: off
    clock: Clock = field(default=time.time)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)  # this server's registry

    def metadata(self, *, openid: bool) -> dict[str, Any]:
        return metadata(
            self.settings.issuer,
            self.token_endpoint.grant_types,
            sorted(SCOPES_SUPPORTED),
            self.keys.algorithms(),
            openid=openid,
            revocation_feed=self.settings.revocation_feed,
            mtls_base=(
                (self.settings.mtls_base_url or self.settings.issuer)
                if self.settings.mtls_enabled
                else None
            ),
            require_par=self.settings.require_pushed_authorization_requests,
            require_signed=self.settings.require_signed_request_object,
            registration=self.registration.enabled,
            profile=profile_named(self.settings.profile),
        )


GRANTS = (
    ClientCredentialsGrant,
    AuthorizationCodeGrant,
    RefreshTokenGrant,
    DeviceCodeGrant,
    TokenExchangeGrant,
)
SCOPES_SUPPORTED = frozenset({"openid", "profile", "email", "offline_access"})


def build_second_factors(
    settings: Settings,
    stores: StoreSet,
    sealer: KeySealer,
    recovery_digests: SecretHasher,
    throttle: SignInThrottle,
    clock: Clock,
) -> SecondFactors:
    """TOTP, recovery codes and passkeys (docs/second-factors.md), throttled like passwords."""
    return SecondFactors(
        catalogue=FactorCatalogue(stores.totp_factors, stores.recovery_codes, stores.passkeys),
        totp=TotpService(stores.totp_factors, sealer, throttle, clock),
        recovery=RecoveryCodeService(stores.recovery_codes, recovery_digests, throttle, clock),
        passkeys=PasskeyService(stores.passkeys, settings.issuer, clock),
    )


async def build_services(
    settings: Settings,
    stores: StoreSet,
    clock: Clock = time.time,
    monitor_settings: MonitorSettings | None = None,
    siblings: Siblings | None = None,  # the other workers of `serve --workers N`, no Redis
) -> Services:
    master_key = settings.resolved_master_key()
    sealer = KeySealer(master_key)
    policies = [
        KeyPolicy(
            algorithm=alg,
            rotation_period=settings.key_rotation_days * 86400,
            publish_ahead=settings.publish_ahead,
            leeway=settings.leeway,
        )
        for alg in dict.fromkeys(
            [
                settings.signing_alg,
                *settings.kept_signing_algs,
                *settings.audience_signing_algs.values(),
                "RS256",  # OIDC: RS256 ID tokens
            ]
        )
    ]
    signing = SigningPolicy(settings.signing_alg, settings.audience_signing_algs, clock)
    keys = await KeyManager.load(
        stores.keys,
        sealer,
        policies,
        clock,
        signing=signing,
        kept=[*settings.kept_signing_algs, "RS256"],
    )
    hasher = SecretHasher(derive_subkey(master_key, "client-secret-digest"))

    names = Namespace.of(settings)
    mirror = RevocationMirror()
    transmitter = ssf_transmitter(settings, stores, keys, clock)
    # Labelled by the token endpoint's grants (built below from these same classes).
    server_metrics = ServerMetrics(grant_types=[grant.grant_type for grant in GRANTS])
    revocations = RevocationFeed(
        stores.revocations,
        [mirror],
        redis=stores.redis,
        clock=clock,
        resync_interval=settings.revocation_resync_seconds,
        max_staleness=settings.revocation_max_staleness,
        fail_open=settings.revocation_fail_open,
        channel=names.revocations,  # the gateways listen here too
        on_revoke=server_metrics.revoked,
        followers=[transmitter.revoked],  # session and subject watermarks become signals
        siblings=siblings,
    )
    # One blocklist for the deployment: a block decided on any node is refused on every node.
    shared_blocklist = (
        RedisBlocklist(stores.redis, names.blocklist, clock=clock)
        if stores.redis is not None
        else None
    )
    monitor = build_monitor(
        monitor_settings if monitor_settings is not None else MonitorSettings(),
        revocations=revocations,
        sessions=stores.sessions,
        keep=max(
            keys.keyring.policy.max_token_lifetime + settings.leeway,
            settings.refresh_token_lifetime,
        ),
        clock=clock,
        # Scale-out: every node counts in the same windows, and reads the gateways' events.
        windows=RedisWindows(stores.redis, names.windows) if stores.redis is not None else None,
        blocklist=shared_blocklist,
        claims=RedisAlertClaims(stores.redis, names.alert_claims)
        if stores.redis is not None
        else None,
    )
    if stores.redis is not None:
        monitor.companions.append(EventConsumer(stores.redis, names.usage, monitor.emit))
    if shared_blocklist is not None:
        monitor.companions.append(shared_blocklist)
    # Every keyring: tokens of each algorithm verify. An unknown kid re-reads the keys (at most
    # every 5 s): one another worker or node rotated in is trusted before the schedule's reload.
    key_source = KeyringKeySource(keys, keys.reload)
    opaque = StoreOpaqueResolver(stores.access_tokens)
    common: dict[str, Any] = {
        "issuer": settings.issuer,
        "keys": key_source,
        "revocations": mirror,
        "opaque": opaque,
        "leeway": settings.leeway,
        "clock": clock,
        "cache_size": settings.token_cache_entries,
    }
    nonces = DpopNonces(derive_subkey(master_key, "dpop-nonce"), clock)
    dpop = DpopVerifier(stores.replay.first_use, nonces if settings.dpop_nonces else None, clock)
    # Resources here (demo API, userinfo) accept DPoP proofs without requiring nonces.
    common["dpop"] = DpopVerifier(stores.replay.first_use, None, clock)
    validator = Validator(audience=settings.audience, **common)
    any_audience = Validator(audience=(), any_audience=True, **common)

    base = settings.issuer.rstrip("/")
    profiles = Profiles(profile_named(settings.profile))  # FAPI 2.0 and friends: oauth/profiles
    # One cache of clients' jwks_uri sets, for assertions and JAR. Anyone who registers a client
    # chooses that URL (dynamic registration), so it is fetched through the SSRF guard.
    client_keys = ClientKeys(GuardedTransport(allow_loopback=settings.outbound_allow_loopback))
    authenticator = ClientAuthenticator(
        stores.clients,
        hasher,
        stores.replay,
        # RFC 9126 §2: the PAR URL is a fine audience for an assertion sent there too.
        frozenset({settings.issuer, f"{base}/token", f"{base}/par"}),
        clock,
        keys=client_keys,
        issuer=settings.issuer,
        profiles=profiles,
        signing_algs=keys.algorithms,
    )
    request_objects = RequestObjects(
        client_keys, stores.replay, settings.issuer, settings.leeway, clock, profiles
    )
    request_uris = RequestUris(stores.pushed, settings.par_lifetime, clock)
    authorization = AuthorizationValidator(
        stores.clients,
        settings.issuer,
        settings.audience,
        uris=request_uris,
        request_objects=request_objects,
        require_par=settings.require_pushed_authorization_requests,
        require_signed=settings.require_signed_request_object,
        profiles=profiles,
    )
    issuer = AccessTokenIssuer(
        {
            "jwt": JwtAccessTokenStrategy(
                keys, settings.issuer, lifetime=settings.access_token_lifetime, clock=clock
            ),
            "opaque": OpaqueAccessTokenStrategy(
                stores.access_tokens,
                settings.issuer,
                lifetime=settings.access_token_lifetime,
                clock=clock,
            ),
        },
        algorithm_of=keys.signing.access_token_alg,
        profiles=profiles,
    )
    id_tokens = IdTokenSigner(keys.keyrings, settings.issuer, clock)
    refresh = RefreshTokens(
        stores.grants,
        derive_subkey(master_key, "refresh-successor"),
        grace=settings.refresh_reuse_grace,
        clock=clock,
    )
    minter = UserTokenMinter(issuer, refresh, id_tokens)
    exchange = token_exchange(
        settings, stores, issuer, any_audience, keys, mirror, revocations, clock=clock
    )
    token_endpoint = TokenEndpoint(
        authenticator,
        [
            ClientCredentialsGrant(issuer, settings.audience),
            AuthorizationCodeGrant(
                stores.codes,
                stores.grants,
                minter,
                revocations,
                mirror,
                settings.leeway,
                clock,
                participants=stores.participants,
            ),
            RefreshTokenGrant(
                minter,
                stores.users,
                revocations,
                mirror,
                settings.leeway,
                clock,
                events=monitor,
                profiles=profiles,
            ),
            DeviceCodeGrant(stores.devices, minter, clock),
            exchange,
        ],
        dpop=dpop,
        token_url=f"{base}/token",
        profiles=profiles,
    )
    refresh_admin = RefreshAdmin(stores.grants, revocations, mirror, settings.leeway, clock)
    introspector = Introspector(
        authenticator,
        any_audience,
        keys,
        settings.issuer,
        clock,
        refresh_lookup=refresh_admin.introspect,
    )
    revoker = Revoker(
        authenticator,
        any_audience,
        revocations,
        stores.access_tokens,
        settings.leeway,
        refresh_revoker=refresh_admin.revoke,
    )
    session_manager = SessionManager(stores.sessions, stores.users, clock)
    login_throttle = sign_in_throttle(settings, stores, clock)
    second_factors = build_second_factors(
        settings,
        stores,
        sealer,
        SecretHasher(derive_subkey(master_key, "recovery-codes")),
        login_throttle,
        clock,
    )
    keep = max(
        keys.keyring.policy.max_token_lifetime + settings.leeway, settings.refresh_token_lifetime
    )
    watermarks = Watermarks(revocations, keep, clock)
    client_admin = ClientAdmin(
        stores.clients, hasher, watermarks, clock, profiles, signing_algs=keys.algorithms
    )
    user_admin = UserAdmin(
        stores.users, stores.sessions, session_manager, watermarks, clock, signals=transmitter
    )
    initial_tokens, registration = registration_parts(
        settings, stores, client_admin, master_key, watermarks, clock
    )
    return Services(
        settings=settings,
        stores=stores,
        keys=keys,
        hasher=hasher,
        revocations=revocations,
        validator=validator,
        token_endpoint=token_endpoint,
        introspector=introspector,
        revoker=revoker,
        sessions=session_manager,
        interactions=InteractionSealer(
            derive_subkey(master_key, "interaction"), stores.replay.first_use, clock
        ),
        csrf=CsrfTokens(derive_subkey(master_key, "csrf"), clock),
        authorization=authorization,
        pushed_authorization=PushedAuthorization(
            authenticator, authorization, request_objects, request_uris, dpop, f"{base}/par"
        ),
        flow=AuthorizationFlow(
            stores.codes,
            stores.consents,
            settings.issuer,
            clock,
            profiles=profiles,
            factors=second_factors.catalogue,
        ),
        device=DeviceAuthorization(
            authenticator, stores.devices, settings.issuer, settings.audience, clock
        ),
        login_throttle=login_throttle,
        userinfo=any_audience,
        id_tokens=id_tokens,
        monitor=monitor,
        revocation_publisher=RevocationPublisher(revocations, clock),
        client_admin=client_admin,
        user_admin=user_admin,
        watermarks=watermarks,
        admin_actions=AdminActions(
            client_admin,
            user_admin,
            watermarks,
            stores.consents,
            keys,
            monitor,
            initial_tokens,
            second_factors.catalogue,
        ),
        admin_access=AdminAccess(stores.clients, stores.users),
        console=ConsoleQueries(
            stores.clients,
            stores.users,
            stores.sessions,
            stores.consents,
            keys,
            clock,
            factors=second_factors.catalogue,
        ),
        sign_in=PasswordSignIn(
            stores.users,
            login_throttle,
            session_manager,
            monitor,
            server_metrics,
            clock,
        ),
        user_claims=UserClaims(stores.users),
        logout=Logout(
            stores.clients,
            keys.verification_key,
            settings.issuer,
            session_manager,
            revocations,
            settings.refresh_token_lifetime + keys.keyring.policy.max_token_lifetime,
            clock,
        ),
        device_approval=DeviceApproval(stores.devices, stores.clients, clock),
        resumed_clients=ResumedClients(stores.clients),
        demo=DemoAccounts(client_admin, user_admin),
        shared_signals=shared_signals(settings, stores, transmitter, user_admin, watermarks, clock),
        registration=registration,
        initial_tokens=initial_tokens,
        second_factors=second_factors,
        portal=developer_portal(settings, stores, registration, hasher, monitor, clock),
        clock=clock,
        metrics=server_metrics,
    )


def registration_parts(
    settings: Settings,
    stores: StoreSet,
    admin: ClientAdmin,
    master_key: str,
    watermarks: Watermarks,
    clock: Clock,
) -> tuple[InitialTokenAdmin, ClientRegistration]:
    """The operator's initial access tokens and RFC 7591/7592, sharing one digest subkey."""
    digests = SecretHasher(derive_subkey(master_key, "registration-tokens"))
    initial_tokens = InitialTokenAdmin(stores.initial_tokens, digests, clock)
    return initial_tokens, client_registration(settings, stores, admin, digests, watermarks, clock)


def developer_portal(
    settings: Settings,
    stores: StoreSet,
    registration: ClientRegistration,
    hasher: SecretHasher,
    monitor: Monitor,
    clock: Clock,
) -> DeveloperApps | None:
    """The portal when TOKENWARD_PORTAL_GATEWAY_CONFIGS names its catalogue, else None (off)."""
    paths = settings.portal_config_paths
    if not paths:
        return None
    return DeveloperApps(
        settings=PortalSettings(max_apps=settings.portal_max_apps),
        catalogue=load_catalogue(paths),
        clients=stores.clients,
        registration=registration,
        hasher=hasher,
        monitor=monitor,
        clock=clock,
    )


def client_registration(
    settings: Settings,
    stores: StoreSet,
    admin: ClientAdmin,
    digests: SecretHasher,
    watermarks: Watermarks,
    clock: Clock,
) -> ClientRegistration:
    """RFC 7591/7592 as TOKENWARD_REGISTRATION* say; registrations counted per address in
    Redis when there is one (every node shares the allowance), else in this process."""
    requests, per = rate_limit(settings.registration_rate)
    limiter: RateLimiter = (
        RedisRateLimiter(stores.redis, Namespace.of(settings).registration_rate)
        if stores.redis is not None
        else MemoryRateLimiter(max_keys=10_000)
    )
    statements = SoftwareStatements(
        [
            StatementIssuer(entry.issuer, RemoteJwks(entry.jwks_uri), entry.algorithm)
            for entry in settings.registration_statement_issuers
        ],
        leeway=settings.leeway,
        clock=clock,
    )
    return ClientRegistration(
        issuer=settings.issuer,
        policy=RegistrationPolicy(
            mode=settings.registration,
            scopes=frozenset(settings.registration_scopes.split()),
            rate=RatePolicy("registration", requests, per, "ip"),
            require_statement=settings.registration_require_statement,
            max_open_clients=settings.registration_max_open_clients,
        ),
        admin=admin,
        clients=stores.clients,
        initial_tokens=stores.initial_tokens,
        access_tokens=stores.registration_tokens,
        digests=digests,
        statements=statements,
        limiter=limiter,
        watermarks=watermarks,
        clock=clock,
    )


def ssf_transmitter(
    settings: Settings, stores: StoreSet, keys: KeyManager, clock: Clock
) -> Transmitter:
    """SETs are signed with the deployment's signing algorithm as the key choices stand at
    each signing (`keys migrate` moves it, as for access tokens); logout tokens like the
    client's ID tokens. One delivery queue serves both."""
    signer = TokenSigner(keys.keyrings, keys.signing.default_alg)
    deliveries = Deliveries(allow_loopback=settings.outbound_allow_loopback)
    backchannel = BackChannelLogout(
        settings.issuer, stores.clients, stores.participants, signer, deliveries, clock
    )
    return Transmitter(
        settings.issuer,
        stores.ssf_streams,
        stores.set_queue,
        signer,
        deliveries,
        stores.sessions,
        backchannel,
        stores.replay,
        clock,
    )


def shared_signals(
    settings: Settings,
    stores: StoreSet,
    transmitter: Transmitter,
    user_admin: UserAdmin,
    watermarks: Watermarks,
    clock: Clock,
) -> SharedSignals:
    base = settings.issuer.rstrip("/")
    streams = StreamManager(
        settings.issuer,
        stores.ssf_streams,
        stores.set_queue,
        lambda stream_id: poll_url(settings.issuer, stream_id),
        transmitter.enabled,
        transmitter.verify,
        clock,
        allow_loopback=settings.outbound_allow_loopback,
    )
    receiver = SetReceiver(
        [
            SsfTransmitter(entry.issuer, RemoteJwks(entry.jwks_uri), entry.algorithm)
            for entry in settings.ssf_transmitters
        ],
        frozenset({settings.issuer, base + RECEIVE}),
        stores.replay,
        stores.users,
        user_admin,
        watermarks,
        max_age=settings.ssf_max_age,
        leeway=settings.leeway,
        clock=clock,
    )
    return SharedSignals(
        issuer=settings.issuer,
        transmitter=transmitter,
        streams=streams,
        poll=PollEndpoint(stores.set_queue, transmitter.wakeups),
        receiver=receiver,
        backchannel=transmitter.backchannel,
        deliveries=transmitter.deliveries,
    )


def token_exchange(
    settings: Settings,
    stores: StoreSet,
    issuer: AccessTokenIssuer,
    any_audience: Validator,
    keys: KeyManager,
    mirror: RevocationMirror,
    revocations: RevocationFeed,
    *,
    clock: Clock,
) -> TokenExchangeGrant:
    """RFC 8693: our tokens, and JWTs of the configured trusted issuers (keys fetched)."""
    base = settings.issuer.rstrip("/")
    reader = ExchangeTokenReader(
        issuer=settings.issuer,
        audiences=frozenset({settings.issuer, f"{base}/token"}),
        access_tokens=any_audience,
        our_keys=keys.verification_key,
        mirror=mirror,
        trusted=[
            TrustedIssuer(entry.issuer, RemoteJwks(entry.jwks_uri), entry.algorithm)
            for entry in settings.exchange_trusted_issuers
        ],
        leeway=settings.leeway,
        clock=clock,
    )
    return TokenExchangeGrant(
        reader,
        issuer,
        stores.lineage,
        revocations,
        issuer_id=settings.issuer,
        leeway=settings.leeway,
        clock=clock,
    )


def sign_in_throttle(settings: Settings, stores: StoreSet, clock: Clock) -> SignInThrottle:
    """Scale-out: one allowance for every node, kept across restarts (in Redis). Workers of one
    server without Redis count in the database; a single process, in its memory."""
    memory = MemorySignInThrottle(clock)
    if stores.redis is None:
        if settings.workers > 1 and stores.signin is not None:
            return stores.signin
        return memory
    return RedisSignInThrottle(
        stores.redis, Namespace.of(settings).sign_in, fallback=memory, clock=clock
    )


async def open_stores(settings: Settings, clock: Clock = time.time) -> StoreSet:
    """The durable stores for these settings (SQLite by default, PostgreSQL by URL), migrated."""
    url = settings.resolved_database_url
    secure_sqlite(url)  # a 0600 database (so -wal/-shm/-journal too), in a new 0700 directory
    secure_file(settings.data_dir / "master.key")  # 0600 if it is there
    engine = sql.create_engine(
        url, schema=settings.database_schema, pool_size=settings.database_pool_size
    )
    await sql.migrate(engine)
    sessions = sql.session_factory(engine)
    redis = connect(settings.redis_url) if settings.redis_url else None
    closers: list[Callable[[], Awaitable[Any]]] = [engine.dispose]
    grants: sql.SqlGrantStore
    codes: sql.SqlCodeStore
    users = sql.SqlUserStore(sessions)
    access_tokens = sql.SqlAccessTokenStore(sessions, clock)
    clients = sql.SqlClientStore(sessions)
    devices = sql.SqlDeviceStore(sessions, clock)
    replay: ReplayCache = sql.SqlReplayCache(sessions, clock)
    pushed = sql.SqlPushedRequestStore(sessions, clock)
    revocations: RevocationStore = sql.SqlRevocationStore(sessions, clock)
    path = sql.sqlite_file(url)
    if path is not None:
        # SQLite file: the token endpoint's grant writes in one thread hop per group-committed
        # batch (store/sql/sqlite_writer.py); closed before the engine.
        writer = sql.SqliteWriter(path)
        closers.insert(0, writer.aclose)
        grants = sql.SqliteGrantStore(sessions, writer, clock)
        codes = sql.SqliteCodeStore(sessions, writer, clock)
        users = sql.SqliteUserStore(sessions, writer)
        access_tokens = sql.SqliteAccessTokenStore(sessions, writer, clock)
        clients = sql.SqliteClientStore(sessions, writer)
        devices = sql.SqliteDeviceStore(sessions, writer, clock)
        replay = sql.SqliteReplayCache(sessions, writer, clock)
        pushed = sql.SqlitePushedRequestStore(sessions, writer, clock)
        revocations = sql.SqliteRevocationStore(sessions, writer, clock)
    elif url.startswith("sqlite"):
        # In-memory SQLite shares commits through the engine.
        group = sql.GroupCommit(sessions)
        grants = sql.SqlGrantStore(sessions, clock, group=group)
        codes = sql.SqlCodeStore(sessions, clock, group=group)
    else:
        # PostgreSQL: the token endpoint's reads, rotations and code exchanges on the pooled
        # driver connection (store/sql/pg_grants.py); everything else through the ORM.
        grants = sql.PgGrantStore(sessions, engine, clock)
        codes = sql.PgCodeStore(sessions, engine, clock)
        users = sql.PgUserStore(sessions, engine)
        access_tokens = sql.PgAccessTokenStore(sessions, engine, clock)
        devices = sql.PgDeviceStore(sessions, engine, clock)
    if redis is not None:
        closers.append(redis.aclose)
    return StoreSet(
        keys=sql.SqlKeyStore(sessions),
        revocations=revocations,
        access_tokens=access_tokens,
        clients=CachedClientStore(clients),
        users=users,
        replay=(
            RedisReplayCache(redis, clock, prefix=Namespace.of(settings).replay)
            if redis
            else replay
        ),
        sessions=sql.SqlSessionStore(sessions, clock),
        codes=codes,
        grants=grants,
        lineage=grants,
        devices=devices,
        consents=sql.SqlConsentStore(sessions),
        participants=sql.SqlSessionParticipants(sessions),
        ssf_streams=sql.SqlSsfStreams(sessions),
        set_queue=sql.SqlSetQueue(sessions),
        totp_factors=sql.SqlTotpFactors(sessions),
        recovery_codes=sql.SqlRecoveryCodes(sessions),
        passkeys=sql.SqlPasskeys(sessions),
        pushed=pushed,
        initial_tokens=sql.SqlInitialAccessTokens(sessions),
        registration_tokens=sql.SqlRegistrationAccessTokens(sessions),
        signin=sql.SqlSignInThrottle(sessions, clock),
        redis=redis,
        engine=engine,
        closers=closers,
    )
