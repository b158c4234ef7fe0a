"""Pure-ASGI middleware for the authorization server: refuse blocked addresses, and emit one
usage event per request to its own protected APIs (the demo API, /userinfo).

The wrapped routes validate tokens themselves; this layer only watches the answer. Identity
comes from the validator's cache for admitted requests (a dict read), and for requests refused
as revoked from a signature check of the token (no revocation or time checks: it only names
the token, it admits nothing). Everything else stays unattributed. Nothing here awaits on the
request path except the wrapped app.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from tokenward.core.claims import AccessToken, access_token_from_claims
from tokenward.core.errors import JoseError
from tokenward.core.events import (
    ALLOW,
    DENY,
    EXPIRED,
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    IP_BLOCKED,
    MISSING_TOKEN,
    REVOKED,
    SESSION_ENDED,
)
from tokenward.guard.validator import Validator
from tokenward.monitor.pipeline import Monitor
from tokenward.tokens.jws import UnknownKeyError, payload_object, verify_compact

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PARAM = re.compile(r'(error|error_description)="([^"]*)"')
_PHRASES = (
    ("session ended", SESSION_ENDED),
    ("revoked", REVOKED),
    ("expired", EXPIRED),
    ("audience", "wrong_audience"),
    ("malformed", "malformed"),
)
BLOCKED_BODY = orjson.dumps(
    {"error": "access_denied", "error_description": "requests from this address are blocked"}
)


def deny_reason(status: int, challenge: str | None) -> tuple[str, str]:
    """(decision, reason) from the status and the RFC 6750 challenge, as the gateway codes it."""
    if challenge is None:
        return (ALLOW, "ok") if status < 400 else (ALLOW, f"http_{status}")
    params = dict(_PARAM.findall(challenge))
    error = params.get("error")
    if error is None:
        return DENY, MISSING_TOKEN
    if error == INVALID_TOKEN:
        description = params.get("error_description", "")
        return DENY, next((code for phrase, code in _PHRASES if phrase in description), error)
    if error == "invalid_request":
        return DENY, "malformed"
    return DENY, error if error != INSUFFICIENT_SCOPE else INSUFFICIENT_SCOPE


def signed_claims(validator: Validator, authorization: str) -> AccessToken | None:
    """The claims of a token whose signature is one of ours; nothing else is checked."""
    raw = authorization.partition(" ")[2].strip()
    if raw.count(".") != 2:
        return None
    try:
        jws, _key = verify_compact(raw, validator.keys.get)
        return access_token_from_claims(payload_object(jws))
    except (JoseError, UnknownKeyError, ValueError, TypeError):
        return None


class MonitorMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        monitor: Monitor,
        validators: Sequence[Validator],
        prefixes: Sequence[str] = ("/api/", "/userinfo"),
        unblocked: Sequence[str] = ("/admin", "/healthz"),
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.validators = tuple(validators)  # whose caches may hold the token (API, userinfo)
        self.prefixes = tuple(prefixes)
        self.unblocked = tuple(unblocked)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "-"
        path: str = scope["path"]
        if self.monitor.blocklist.is_blocked(ip) and not path.startswith(self.unblocked):
            await self._refuse(scope, ip, send)
            return
        if not path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        status, challenge = 500, None

        async def watch(message: Message) -> None:
            nonlocal status, challenge
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 400:  # challenges come only with refusals
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"www-authenticate":
                            challenge = value.decode("latin-1")
                            break
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._emit(scope, ip, status, challenge)

    def _emit(self, scope: Scope, ip: str, status: int, challenge: str | None) -> None:
        decision, reason = deny_reason(status, challenge)
        authorization = user_agent = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value[:256]  # bytes: decoded off the request path
        token = self._identify(authorization, decision, reason)
        if token is None:
            jti = sub = client_id = sid = None
        else:
            jti, sub, client_id, sid = token.jti, token.sub, token.client_id, token.sid
        self.monitor.emit_fields(
            self.monitor.clock(),
            jti,
            sub,
            client_id,
            scope["path"][:200],
            ip,
            user_agent,
            status,
            decision,
            reason,
            sid,
            "server",
        )

    def _identify(
        self, authorization: str | None, decision: str, reason: str
    ) -> AccessToken | None:
        if authorization is None:
            return None
        if decision == ALLOW or reason == INSUFFICIENT_SCOPE:
            for validator in self.validators:
                entry = validator.cache.get(authorization)
                if entry is not None:
                    return entry.token
        elif reason not in (REVOKED, SESSION_ENDED, EXPIRED):
            return None
        return signed_claims(self.validators[0], authorization)

    async def _refuse(self, scope: Scope, ip: str, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                    (b"content-length", str(len(BLOCKED_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": BLOCKED_BODY})
        path = scope["path"][:200]
        self.monitor.emit_fields(
            self.monitor.clock(),
            None,
            None,
            None,
            path,
            ip,
            None,
            403,
            DENY,
            IP_BLOCKED,
            None,
            "server",
        )
