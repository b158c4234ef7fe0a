"""Token introspection (RFC 7662), with JWT responses (RFC 9701) on request.

Only authenticated clients may ask. Anything unknown, expired or revoked is `{"active": false}`
and nothing more, so the answer leaks nothing about why.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson

from tokenward.core.claims import AccessToken
from tokenward.core.client_certs import ClientCertificate
from tokenward.core.errors import BearerError
from tokenward.core.ports import TokenVerifier
from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import InvalidRequest
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.jwt_access import claims_of
from tokenward.tokens.keyring import ManagedKey

JWT_RESPONSE_TYPE = "application/token-introspection+jwt"
INACTIVE: dict[str, Any] = {"active": False}


def active_response(token: AccessToken) -> dict[str, Any]:
    body = claims_of(token)
    body["active"] = True
    body["token_type"] = "DPoP" if token.jkt else "Bearer"
    return body


class SigningKey(Protocol):
    """Whose active key signs JWT introspection responses (RFC 9701): a keyring, or the key
    manager (the deployment's access-token algorithm as it stands now)."""

    def active(self) -> ManagedKey: ...


class Introspector:
    def __init__(
        self,
        authenticator: ClientAuthenticator,
        validator: TokenVerifier,
        keyring: SigningKey,
        issuer: str,
        clock: Callable[[], float] = time.time,
        *,
        refresh_lookup: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._validator = validator  # built with any_audience=True: we answer for every resource
        self._keyring = keyring
        self._issuer = issuer
        self._clock = clock
        self.refresh_lookup = refresh_lookup  # None: refresh tokens are never active here

    async def introspect(
        self,
        params: Mapping[str, str],
        authorization: str | None,
        certificate: ClientCertificate | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Returns (caller client_id, response claims). `certificate`: the caller's TLS client
        certificate, for mTLS client authentication."""
        client = await self._authenticator.authenticate(params, authorization, certificate)
        token = params.get("token")
        if token is None:
            raise InvalidRequest("token is required")
        hint = params.get("token_type_hint")
        if hint == "refresh_token" and self.refresh_lookup is not None:
            found = await self.refresh_lookup(token)
            if found is not None:
                return client.client_id, found
        try:
            access = await self._validator.inspect(token)
        except BearerError:
            access = None
        if access is not None:
            return client.client_id, active_response(access)
        if self.refresh_lookup is not None and hint != "refresh_token":
            found = await self.refresh_lookup(token)
            if found is not None:
                return client.client_id, found
        return client.client_id, dict(INACTIVE)

    def as_jwt(self, audience: str, response: dict[str, Any]) -> str:
        """RFC 9701 §5: a signed JWT wrapping the response, for the caller."""
        key = self._keyring.active()
        header = {"alg": key.alg.name, "kid": key.kid, "typ": "token-introspection+jwt"}
        payload = {
            "iss": self._issuer,
            "aud": audience,
            "iat": int(self._clock()),
            "token_introspection": response,
        }
        return sign_compact(header, orjson.dumps(payload), key.sign)
