"""Form reading shared by the authorization, device, logout and console pages, and the edge of
password sign-in (the sign-in itself is services/signin.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from tokenward.oauth.errors import InvalidRequest
from tokenward.server.edge import read_body
from tokenward.services.signin import PasswordSignIn, SignIn

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


async def attempt_sign_in(
    sign_in: PasswordSignIn, request: Request, pairs: list[tuple[str, str]]
) -> SignIn:
    """The form's username and password (bounded), from the client's address (behind trusted
    proxies: theirs)."""
    username = (single(pairs, "username") or "")[:256]
    password = (single(pairs, "password") or "")[:1024]
    ip = request.client.host if request.client else "unknown"
    return await sign_in.sign_in(username, password, ip)
