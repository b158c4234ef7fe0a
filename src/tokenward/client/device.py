"""Device authorization login (RFC 8628) for CLIs and devices without a browser of their own.

The user reads a short code, approves elsewhere, and meanwhile we poll the token endpoint at the
server's pace: `interval` seconds (default 5, §3.2), five more after every `slow_down` (§3.5),
until tokens, a denial or the device code's expiry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenward.client._flow import Flow, pause
from tokenward.client.discovery import check_endpoint_url
from tokenward.client.errors import AuthorizationError, DiscoveryError, OAuthResponseError
from tokenward.client.token_source import TokenSource, _json_or_none
from tokenward.client.tokens import TokenSet

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
MAX_POLLS = 1000  # a backstop should the clock never move


@dataclass(frozen=True, slots=True, repr=False)
class DeviceAuthorization:
    """What to show the user, and the device code to poll with (never shown, never in a repr)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(verification_uri={self.verification_uri!r}, "
            f"expires_at={self.expires_at!r}, interval={self.interval!r})"
        )

    __str__ = __repr__


def print_prompt(authorization: DeviceAuthorization) -> None:
    """The default prompt: on stderr, so a command's standard output stays clean."""
    where = authorization.verification_uri_complete or authorization.verification_uri
    print(
        f"To sign in, open {authorization.verification_uri} and enter the code "
        f"{authorization.user_code}\n(or open {where})",
        file=sys.stderr,
        flush=True,
    )


class DeviceCodeLogin(TokenSource):
    """`login()` runs the whole flow; `start()` and `poll()` let a UI show the code itself."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        prompt: Callable[[DeviceAuthorization], None] = print_prompt,
        **options: Any,
    ) -> None:
        super().__init__(issuer, client_id, client_secret, **options)
        self._prompt = prompt

    def start(self) -> DeviceAuthorization:
        return self.http.run(self._start_flow())

    async def astart(self) -> DeviceAuthorization:
        return await self.http.arun(self._start_flow())

    def poll(self, authorization: DeviceAuthorization) -> TokenSet:
        return self.http.run(self._poll_flow(authorization))

    async def apoll(self, authorization: DeviceAuthorization) -> TokenSet:
        return await self.http.arun(self._poll_flow(authorization))

    def login(self) -> TokenSet:
        authorization = self.start()
        self._prompt(authorization)
        return self.poll(authorization)

    async def alogin(self) -> TokenSet:
        authorization = await self.astart()
        self._prompt(authorization)
        return await self.apoll(authorization)

    def _start_flow(self) -> Flow[DeviceAuthorization]:
        metadata = yield from self.discovery.flow()
        if metadata.device_authorization_endpoint is None:
            raise DiscoveryError("the issuer offers no device authorization endpoint")
        params = {"scope": self.scope} if self.scope else {}
        response = yield from self._post(metadata.device_authorization_endpoint, params, None)
        body = _json_or_none(response)
        if response.status_code != 200:
            raise self._error(response, body, params)
        return self._authorization(body, response.status_code)

    def _authorization(self, body: object, status: int) -> DeviceAuthorization:
        if not isinstance(body, dict):
            raise OAuthResponseError("invalid_response", "not a JSON object", status_code=status)
        values = [body.get(n) for n in ("device_code", "user_code", "verification_uri")]
        if not all(isinstance(v, str) and v for v in values):
            raise OAuthResponseError("invalid_response", "incomplete device authorization")
        device_code, user_code, uri = (str(v) for v in values)
        complete = body.get("verification_uri_complete")
        expires_in, interval = body.get("expires_in"), body.get("interval", DEFAULT_INTERVAL)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            raise OAuthResponseError("invalid_response", "no expires_in")
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 1:
            interval = DEFAULT_INTERVAL
        return DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=check_endpoint_url(uri),
            verification_uri_complete=check_endpoint_url(complete)
            if isinstance(complete, str)
            else None,
            expires_at=self.clock() + float(expires_in),
            interval=float(interval),
        )

    def _poll_flow(self, authorization: DeviceAuthorization) -> Flow[TokenSet]:
        interval = authorization.interval
        params = {"grant_type": GRANT_TYPE, "device_code": authorization.device_code}
        for _ in range(MAX_POLLS):
            yield from pause(interval)
            if self.clock() >= authorization.expires_at:
                break
            try:
                return (yield from self._token_flow(params, self.dpop))
            except OAuthResponseError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP  # RFC 8628 §3.5: for this and every later poll
                    continue
                if exc.error == "access_denied":
                    raise AuthorizationError("the sign-in was declined", error=exc.error) from None
                if exc.error == "expired_token":
                    break
                raise
        raise AuthorizationError(
            "the device code expired before the sign-in was approved: start again",
            error="expired_token",
        )
