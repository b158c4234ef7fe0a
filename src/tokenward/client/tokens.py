"""What a token response leaves a client holding, and how a store turns it into JSON and back."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tokenward.client.dpop import DpopKey
from tokenward.client.errors import OAuthResponseError, StoreError

BEARER = "Bearer"
DPOP = "DPoP"


@dataclass(frozen=True, slots=True, repr=False)
class TokenSet:
    """An access token with what belongs to it. Its repr names no token, only their shape."""

    access_token: str
    token_type: str  # "Bearer" or "DPoP" (RFC 9449 §5: a bound token)
    expires_at: float | None  # on the client's clock; None: the server did not say
    refresh_token: str | None = None
    scope: str | None = None
    id_token: str | None = None
    dpop_key: DpopKey | None = None  # the key a DPoP-bound access or refresh token needs
    issuer: str | None = None
    client_id: str | None = None
    # The ID token's claims, verified on receipt (client/id_tokens.py); None without one.
    id_token_claims: Mapping[str, Any] | None = None

    @property
    def is_dpop(self) -> bool:
        return self.token_type.lower() == "dpop"

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and self.expires_at - seconds <= now

    def __repr__(self) -> str:
        jkt = self.dpop_key.thumbprint if self.dpop_key else None
        return (
            f"TokenSet(token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, refresh_token={'<set>' if self.refresh_token else None}, "
            f"id_token={'<set>' if self.id_token else None}, dpop_jkt={jkt!r}, "
            f"issuer={self.issuer!r}, client_id={self.client_id!r})"
        )

    __str__ = __repr__

    def successor(self, newer: TokenSet) -> TokenSet:
        """`newer` from a refresh: a server that rotates nothing leaves the old refresh token
        (RFC 6749 §6), and an ID token is kept until a new one comes."""
        return replace(
            newer,
            refresh_token=newer.refresh_token or self.refresh_token,
            id_token=newer.id_token or self.id_token,
            id_token_claims=newer.id_token_claims if newer.id_token else self.id_token_claims,
            dpop_key=newer.dpop_key or self.dpop_key,
        )

    def to_json(self, wrap: bytes) -> dict[str, Any]:
        """For a store. The DPoP key leaves only as PKCS#8 encrypted under `wrap`."""
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "id_token": self.id_token,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "id_token_claims": dict(self.id_token_claims) if self.id_token_claims else None,
        }
        if self.dpop_key is not None:
            data["dpop_key"] = self.dpop_key.private_pem(wrap).decode("ascii")
        return data

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], wrap: bytes, clock: Callable[[], float] = time.time
    ) -> TokenSet:
        try:
            pem = data.get("dpop_key")
            return cls(
                access_token=str(data["access_token"]),
                token_type=str(data["token_type"]),
                expires_at=_optional_float(data.get("expires_at")),
                refresh_token=_optional_str(data.get("refresh_token")),
                scope=_optional_str(data.get("scope")),
                id_token=_optional_str(data.get("id_token")),
                dpop_key=DpopKey.from_pem(pem.encode("ascii"), wrap, clock=clock)
                if isinstance(pem, str)
                else None,
                issuer=_optional_str(data.get("issuer")),
                client_id=_optional_str(data.get("client_id")),
                id_token_claims=_optional_dict(data.get("id_token_claims")),
            )
        except (KeyError, TypeError, ValueError):
            raise StoreError("a stored token entry is malformed") from None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_token_response(
    body: object,
    *,
    now: float,
    dpop_key: DpopKey | None,
    issuer: str,
    client_id: str,
    status_code: int = 200,
) -> TokenSet:
    """RFC 6749 §5.1, checked: a client that accepts anything ends up sending anything."""
    if not isinstance(body, dict):
        raise OAuthResponseError("invalid_response", "not a JSON object", status_code=status_code)
    access, token_type = body.get("access_token"), body.get("token_type")
    if not isinstance(access, str) or not access or not isinstance(token_type, str):
        raise OAuthResponseError(
            "invalid_response", "no access_token or token_type", status_code=status_code
        )
    if token_type.lower() not in ("bearer", "dpop"):
        raise OAuthResponseError("invalid_response", "unsupported token_type", status_code=200)
    if token_type.lower() == "dpop" and dpop_key is None:
        raise OAuthResponseError("invalid_response", "a DPoP token nobody asked for")
    lifetime = _optional_float(body.get("expires_in"))
    if lifetime is not None and not math.isfinite(lifetime):
        lifetime = None
    refresh, scope, id_token = (body.get(n) for n in ("refresh_token", "scope", "id_token"))
    return TokenSet(
        access_token=access,
        token_type=DPOP if token_type.lower() == "dpop" else BEARER,
        expires_at=now + max(0.0, lifetime) if lifetime is not None else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
        id_token=id_token if isinstance(id_token, str) else None,
        dpop_key=dpop_key,
        issuer=issuer,
        client_id=client_id,
    )
