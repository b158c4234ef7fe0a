"""The composition root: reads the settings once and builds every service from them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tokenward.config import Settings
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.oauth.client_auth import ClientAuthenticator, ReplayCache, SecretHasher
from tokenward.oauth.discovery import metadata
from tokenward.oauth.grants.client_credentials import ClientCredentialsGrant
from tokenward.oauth.introspection import Introspector
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.revocation import Revoker
from tokenward.oauth.token_endpoint import TokenEndpoint
from tokenward.store import memory
from tokenward.store.mirrored import MirroredRevocationStore
from tokenward.store.protocols import (
    AccessTokenStore,
    ClientStore,
    KeyStore,
    RevocationStore,
    UserStore,
)
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.key_manager import KeyManager
from tokenward.tokens.keyring import KeyPolicy
from tokenward.tokens.opaque import OpaqueAccessTokenStrategy, StoreOpaqueResolver
from tokenward.tokens.sealing import KeySealer, derive_subkey

Clock = Callable[[], float]


@dataclass
class StoreSet:
    keys: KeyStore
    revocations: RevocationStore
    access_tokens: AccessTokenStore
    clients: ClientStore
    users: UserStore
    replay: ReplayCache
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

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
    )


@dataclass
class Services:
    settings: Settings
    stores: StoreSet
    keys: KeyManager
    hasher: SecretHasher
    revocations: MirroredRevocationStore
    validator: Validator  # for this server's own protected APIs (audience = settings.audience)
    token_endpoint: TokenEndpoint
    introspector: Introspector
    revoker: Revoker
    clock: Clock = field(default=time.time)

    def metadata(self, *, openid: bool) -> dict[str, Any]:
        return metadata(
            self.settings.issuer,
            self.token_endpoint.grant_types,
            sorted(SCOPES_SUPPORTED),
            [self.keys.keyring.policy.algorithm],
            openid=openid,
        )


SCOPES_SUPPORTED = frozenset({"openid", "profile", "email", "offline_access"})


async def build_services(
    settings: Settings, stores: StoreSet, clock: Clock = time.time
) -> Services:
    master_key = settings.resolved_master_key()
    sealer = KeySealer(master_key)
    policy = KeyPolicy(
        algorithm=settings.signing_alg,
        rotation_period=settings.key_rotation_days * 86400,
        publish_ahead=max(3600.0, settings.jwks_max_age * 2.0),
        leeway=settings.leeway,
    )
    keys = await KeyManager.load(stores.keys, sealer, policy, clock)
    hasher = SecretHasher(derive_subkey(master_key, "client-secret-digest"))

    mirror = RevocationMirror()
    revocations = MirroredRevocationStore(stores.revocations, [mirror])
    await revocations.bootstrap(clock())
    key_source = KeyringKeySource(keys.keyring)
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
    validator = Validator(audience=settings.audience, **common)
    any_audience = Validator(audience=(), any_audience=True, **common)

    base = settings.issuer.rstrip("/")
    authenticator = ClientAuthenticator(
        stores.clients, hasher, stores.replay, frozenset({settings.issuer, f"{base}/token"}), clock
    )
    issuer = AccessTokenIssuer(
        {
            "jwt": JwtAccessTokenStrategy(
                keys.keyring, settings.issuer, lifetime=settings.access_token_lifetime, clock=clock
            ),
            "opaque": OpaqueAccessTokenStrategy(
                stores.access_tokens,
                settings.issuer,
                lifetime=settings.access_token_lifetime,
                clock=clock,
            ),
        }
    )
    token_endpoint = TokenEndpoint(
        authenticator, [ClientCredentialsGrant(issuer, settings.audience)]
    )
    return Services(
        settings=settings,
        stores=stores,
        keys=keys,
        hasher=hasher,
        revocations=revocations,
        validator=validator,
        token_endpoint=token_endpoint,
        introspector=Introspector(
            authenticator, any_audience, keys.keyring, settings.issuer, clock
        ),
        revoker=Revoker(
            authenticator, any_audience, revocations, stores.access_tokens, settings.leeway
        ),
        clock=clock,
    )


async def open_stores(settings: Settings, clock: Clock = time.time) -> StoreSet:
    """The durable stores for these settings (SQL), migrated and ready."""
    return memory_stores(clock)
