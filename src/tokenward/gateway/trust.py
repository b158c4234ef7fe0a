"""Whom the gateway believes: the issuer's keys (embedded keyring or remote JWKS found through
discovery) and, for opaque tokens, the issuer's introspection endpoint.

The validator is built with every audience a route names; each route then checks its own
(`policy.check_token`), so one validator and one token cache serve all routes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson
from redis.asyncio import Redis

from tokenward.core.errors import JoseError
from tokenward.gateway.bff import Bff, Endpoints
from tokenward.gateway.bff_store import SessionStore
from tokenward.gateway.model import DpopSettings, GatewayConfig, Trust
from tokenward.guard import KeySource, RemoteJwks, RevocationMirror, StaticKeySource, Validator
from tokenward.guard.introspection_client import IntrospectionResolver
from tokenward.guard.validator import OpaqueResolver
from tokenward.store.memory import MemoryReplayCache
from tokenward.tokens.dpop import DpopNonces, DpopVerifier, FirstUse
from tokenward.tokens.jwk import key_set_from_jwks

if TYPE_CHECKING:
    from tokenward.core.lifecycle import Background

DISCOVERY_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


class TrustError(RuntimeError):
    """The issuer cannot be reached or described itself wrongly: the gateway will not start."""


@dataclass
class TrustSetup:
    validator: Validator
    introspection: IntrospectionResolver | None
    # What keeps the trust current (local mode: the revocation feed and the key reloads):
    # started and stopped by the gateway's lifespan.
    background: list[Background] = field(default_factory=list)
    redis: list[Redis] = field(default_factory=list)  # clients the trust uses (readiness)


def audiences(config: GatewayConfig) -> tuple[str, ...]:
    named = [*config.trust.audiences, *(r.audience for r in config.routes if r.audience)]
    return tuple(dict.fromkeys(named))


async def discover(issuer: str, http_timeout: float = 5.0) -> dict[str, object]:
    """RFC 8414 §3 metadata (then OIDC discovery); the `issuer` in it must match exactly."""
    base = issuer.rstrip("/")
    async with httpx.AsyncClient(timeout=http_timeout) as client:
        for path in DISCOVERY_PATHS:
            try:
                response = await client.get(base + path, headers={"accept": "application/json"})
            except httpx.HTTPError as exc:
                raise TrustError(
                    f"trust.issuer: cannot reach the issuer at {base} ({type(exc).__name__}); "
                    "start the authorization server first, or correct trust.issuer "
                    "(or set trust.jwks_file to start without it)"
                ) from None
            if response.status_code == 200:
                try:
                    metadata = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    metadata = None  # refused just below, as a wrong answer
                if not isinstance(metadata, dict) or metadata.get("issuer") != issuer:
                    raise TrustError(
                        "trust.issuer: the issuer's metadata names a different issuer "
                        "(RFC 8414 §3.3); set trust.issuer to its exact TOKENWARD_ISSUER"
                    )
                return metadata
    raise TrustError(
        f"trust.issuer: {base} publishes no discovery metadata; "
        "set trust.issuer to the authorization server's issuer URL"
    )


async def remote_trust(
    trust: Trust,
    config: GatewayConfig,
    clock: Callable[[], float] = time.time,
    *,
    mirror: RevocationMirror | None = None,
    first_use: FirstUse | None = None,
) -> TrustSetup:
    """`mirror`: fed by a revocation feed (`revocations:`), else empty (revocations arrive with
    `exp`). `first_use`: the DPoP replay cache, shared by gateways behind one balancer."""
    issuer = _issuer(trust)
    fixed_keys = trust.jwks_uri is not None or trust.jwks_file is not None
    needs_metadata = not fixed_keys or (
        trust.introspection_client_id is not None and trust.introspection_endpoint is None
    )
    metadata = await discover(issuer) if needs_metadata else {}
    keys: KeySource
    if trust.jwks_file is not None:
        keys = _key_file(trust.jwks_file)
    else:
        jwks_uri = trust.jwks_uri or metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise TrustError("the issuer's metadata has no jwks_uri")
        keys = RemoteJwks(jwks_uri)
    resolver = _introspection(trust, metadata, clock)
    validator = build_validator(
        config, keys, mirror or RevocationMirror(), resolver, clock, first_use=first_use
    )
    return TrustSetup(validator, resolver)


def _key_file(path: str) -> StaticKeySource:
    try:
        return StaticKeySource(key_set_from_jwks(orjson.loads(Path(path).read_bytes())))
    except OSError as exc:
        raise TrustError(f"cannot read trust.jwks_file {path}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, JoseError) as exc:
        raise TrustError(f"trust.jwks_file {path} is not a usable JWKS: {exc}") from None


def build_validator(
    config: GatewayConfig,
    keys: KeySource,
    revocations: RevocationMirror,
    opaque: OpaqueResolver | None,
    clock: Callable[[], float] = time.time,
    *,
    first_use: FirstUse | None = None,
) -> Validator:
    """With a DPoP verifier when a route uses `auth: dpop` (replay cache: `first_use`, else
    this process's memory)."""
    issuer = _issuer(config.trust)
    dpop = None
    if any(route.auth == "dpop" for route in config.routes):
        replay = first_use or MemoryReplayCache(clock).first_use
        dpop = dpop_verifier(config.dpop, replay, clock)
    return Validator(
        issuer=issuer,
        audience=audiences(config),
        keys=keys,
        revocations=revocations,
        opaque=opaque,
        clock=clock,
        dpop=dpop,
    )


def dpop_verifier(
    settings: DpopSettings, first_use: FirstUse, clock: Callable[[], float] = time.time
) -> DpopVerifier:
    """Proof checks for `auth: dpop` routes; server nonces (RFC 9449 §9) when a secret is set.
    Gateways sharing the secret accept each other's nonces (they are stateless HMACs)."""
    nonces = None
    if settings.nonces:
        secret = read_secret(settings.nonce_secret_env, settings.nonce_secret_file)
        if len(secret) < 16:
            raise TrustError("the DPoP nonce secret needs at least 16 characters")
        key = hashlib.sha256(b"tokenward-gateway-dpop-nonce\0" + secret.encode()).digest()
        nonces = DpopNonces(key, clock)
    return DpopVerifier(first_use, nonces, clock, settings.algorithms)


def _introspection(
    trust: Trust, metadata: dict[str, object], clock: Callable[[], float]
) -> IntrospectionResolver | None:
    if trust.introspection_client_id is None:
        return None
    endpoint = trust.introspection_endpoint or metadata.get("introspection_endpoint")
    if not isinstance(endpoint, str):
        raise TrustError("the issuer's metadata has no introspection_endpoint")
    return IntrospectionResolver(
        endpoint,
        trust.introspection_client_id,
        read_secret(trust.introspection_secret_env, trust.introspection_secret_file),
        max_ttl=trust.introspection_max_ttl,
        negative_ttl=trust.introspection_negative_ttl,
        clock=clock,
    )


def _issuer(trust: Trust) -> str:
    if trust.issuer is None:  # config validation requires it; a hand-built Trust may lack it
        raise TrustError("trust: needs an issuer")
    return trust.issuer


def read_secret(env: str | None, file: str | None) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise TrustError(f"the environment variable {env} is not set")
        return value
    if file is None:  # config validation requires one of them
        raise TrustError("a secret needs an environment variable or a file")
    try:
        return Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TrustError(f"cannot read the secret file {file}: {exc.strerror}") from None


async def build_bff(
    config: GatewayConfig,
    clock: Callable[[], float] = time.time,
    store: SessionStore | None = None,
) -> Bff | None:
    """Browser mode's client: the issuer's endpoints from discovery, its secret from env/file.
    `store`: where its sessions live (default: this process's memory)."""
    settings = config.bff
    if settings is None:
        return None
    issuer = _issuer(config.trust)
    metadata = await discover(issuer)
    authorize, token = metadata.get("authorization_endpoint"), metadata.get("token_endpoint")
    if not isinstance(authorize, str) or not isinstance(token, str):
        raise TrustError("the issuer's metadata lacks authorization_endpoint or token_endpoint")
    revocation = metadata.get("revocation_endpoint")
    endpoints = Endpoints(authorize, token, revocation if isinstance(revocation, str) else None)
    secret = read_secret(settings.client_secret_env, settings.client_secret_file)
    return Bff(settings, endpoints, secret, clock, store=store)
