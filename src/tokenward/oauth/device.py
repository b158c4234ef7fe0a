"""Device authorization grant (RFC 8628): the device gets codes, the user approves elsewhere."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from tokenward.core.client_certs import ClientCertificate
from tokenward.core.ports import DeviceStore
from tokenward.core.records import ClientRecord, DeviceRecord
from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidGrant,
    InvalidRequest,
    ServerError,
    SlowDown,
    UnauthorizedClient,
)
from tokenward.oauth.resources import audience_for
from tokenward.oauth.scopes import granted_scopes, parse_scope
from tokenward.oauth.token_endpoint import TokenRequest, TokenResponse
from tokenward.oauth.user_tokens import UserGrant, UserTokenMinter

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_LIFETIME = 600
POLL_INTERVAL = 5
# RFC 8628 §6.1: 20 consonants (no vowels: no words), 8 characters = 34.5 bits of entropy,
# with attempts bounded by the code lifetime and sign-in throttling.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
MAX_ACR_VALUES = 256  # as on /authorize


def device_digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode("utf-8", "replace")).hexdigest()


def normalise_user_code(text: str) -> str:
    """What users type: any case, with or without the dash or spaces."""
    return "".join(ch for ch in text.upper() if ch in USER_CODE_ALPHABET)[:16]


def display_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


class DeviceAuthorization:
    def __init__(
        self,
        authenticator: ClientAuthenticator,
        devices: DeviceStore,
        issuer: str,
        default_audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticator = authenticator
        self._devices = devices
        self._issuer = issuer.rstrip("/")
        self._default_audience = default_audience
        self._clock = clock

    async def start(
        self,
        params: Mapping[str, str],
        resources: tuple[str, ...],
        authorization: str | None,
        certificate: ClientCertificate | None = None,
    ) -> dict[str, Any]:
        """RFC 8628 §3.1-3.2. `acr_values` (OIDC Core §3.1.2.1, an extension parameter here,
        RFC 8628 §3.1) is kept with the request: approving it asks for that level, as far as
        the user can reach it, on top of the client's `min_acr` (docs/second-factors.md)."""
        client = await self._authenticator.authenticate(params, authorization, certificate)
        if GRANT_TYPE not in client.grant_types:
            raise UnauthorizedClient("the client may not use the device authorization grant")
        acr_values = params.get("acr_values") or None
        if acr_values is not None and len(acr_values) > MAX_ACR_VALUES:
            raise InvalidRequest("acr_values is too long")
        scopes = granted_scopes(parse_scope(params.get("scope")), client.scopes)
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        now = self._clock()
        await self._devices.save(
            DeviceRecord(
                device_digest=device_digest(device_code),
                user_code=user_code,
                client_id=client.client_id,
                scopes=scopes,
                audience=audience_for(resources, client, self._default_audience),
                created_at=now,
                expires_at=now + DEVICE_CODE_LIFETIME,
                interval=POLL_INTERVAL,
                acr_values=acr_values,
            )
        )
        shown = display_user_code(user_code)
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": f"{self._issuer}/device",
            "verification_uri_complete": f"{self._issuer}/device?user_code={shown}",
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": POLL_INTERVAL,
        }


class DeviceCodeGrant:
    grant_type = GRANT_TYPE

    def __init__(
        self, devices: DeviceStore, minter: UserTokenMinter, clock: Callable[[], float] = time.time
    ) -> None:
        self._devices = devices
        self._minter = minter
        self._clock = clock

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse:
        device_code = request.params.get("device_code")
        if device_code is None:
            raise InvalidRequest("device_code is required")
        now = self._clock()
        record, too_fast = await self._devices.poll(device_digest(device_code), now)
        if record is None or record.client_id != client.client_id:
            raise InvalidGrant("the device code is invalid")
        if record.status == "consumed":
            raise InvalidGrant("the device code was already used")
        if record.expires_at <= now:
            raise ExpiredToken("the device code expired; start again")  # RFC 8628 §3.5
        if record.status == "denied":
            raise AccessDenied("the user declined")
        if record.status != "approved":
            if too_fast:
                raise SlowDown("poll less often: the interval grew by 5 seconds")
            raise AuthorizationPending("the user has not answered yet")
        if record.user_id is None:  # approval names the user; a record without one is corrupt
            raise ServerError("the approved device code names no user")
        grant = UserGrant(
            user_id=record.user_id,
            scopes=record.scopes,
            audience=record.audience,
            session_id=record.session_id,
            auth_time=record.auth_time,
            acr=record.acr,  # the approving sign-in's level, as the code flow carries it
            dpop_jkt=request.dpop_jkt,
            x5t_s256=request.x5t_s256,
        )
        response, _access, _family = await self._minter.respond(client, grant, with_id_token=True)
        return response
