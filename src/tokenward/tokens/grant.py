"""What the authorization server decided to grant, and what a strategy minted from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tokenward.core.claims import AccessToken

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TokenGrant:
    subject: str
    client_id: str
    audience: tuple[str, ...]
    scopes: frozenset[str] = frozenset()
    session_id: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    cnf: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    lifetime: int | None = None  # the client's own access-token lifetime, when it has one
    signing_alg: str | None = None  # the client's own access-token algorithm, when it has one


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    value: str = field(repr=False)  # the credential itself: never in a repr or a log
    claims: AccessToken
    expires_in: int
    token_type: str = "Bearer"
