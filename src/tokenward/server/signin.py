"""Form reading and password sign-in shared by the authorization and device pages."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request

from tokenward.admin import PASSWORDS
from tokenward.core.events import LOGIN_FAILED, AuthEvent
from tokenward.core.records import UserRecord
from tokenward.deploy.wiring import Services
from tokenward.oauth.errors import InvalidRequest
from tokenward.oauth.sessions import ActiveSession
from tokenward.server.edge import read_body

# A real argon2 hash to verify against for unknown users, so both paths cost the same.
_DUMMY_HASH = PASSWORDS.hash("tokenward-timing-equaliser")
MAX_FORM_BYTES = 16 * 1024


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    body = await read_body(request, MAX_FORM_BYTES)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("forms must be application/x-www-form-urlencoded")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form is malformed") from None


def single(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        raise InvalidRequest(f"the field {name} is repeated")
    return values[0] if values else None


async def check_password(services: Services, username: str, password: str) -> UserRecord | None:
    user = await services.stores.users.by_username(username)
    try:
        PASSWORDS.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user if user is not None and not user.disabled else None


@dataclass(frozen=True, slots=True)
class SignIn:
    session: ActiveSession | None = None
    cookie_secret: str | None = None
    error: str | None = None
    status: int = 200


async def attempt_sign_in(
    services: Services, request: Request, pairs: list[tuple[str, str]]
) -> SignIn:
    """Throttled per (username, IP), per IP and per username (core/throttle.py); one message
    for unknown user and wrong password."""
    username = (single(pairs, "username") or "")[:256]
    password = (single(pairs, "password") or "")[:1024]
    ip = request.client.host if request.client else "unknown"  # behind trusted proxies: theirs
    attempt = await services.login_throttle.attempt(username, ip)
    if attempt.wait is not None:
        _report_failure(services, ip, username, "throttled")
        return SignIn(
            error=f"Too many failed sign-in attempts. Try again in {attempt.wait} seconds.",
            status=429,
        )
    user = await check_password(services, username, password)
    if user is None:
        _report_failure(services, ip, username, "wrong_credentials")
        return SignIn(error="Wrong username or password.", status=401)
    await services.login_throttle.succeeded(attempt)
    secret, record = await services.sessions.start(user)
    return SignIn(ActiveSession(record, user), secret)


def _report_failure(services: Services, ip: str, username: str, reason: str) -> None:
    """Tell the monitor (bursts of failed sign-ins from one address); never blocks."""
    services.metrics.sign_in_failed(reason)
    event = AuthEvent(services.clock(), LOGIN_FAILED, ip, username=username[:64], reason=reason)
    services.monitor.emit(event)
