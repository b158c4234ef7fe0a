"""Helpers that drive the browser pages the way a user agent does."""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT_URI = "https://app.example/callback"
_HIDDEN = re.compile(r'name="interaction" value="([^"]+)"')


def hidden_interaction(html: str) -> str:
    match = _HIDDEN.search(html)
    assert match is not None, html[:500]
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_params(pkce: Pkce, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile read",
        "state": "st-123",
        "nonce": "n-456",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **extra,
    }


async def sign_in_and_consent(
    http: httpx.AsyncClient,
    pkce: Pkce,
    username: str = "alice",
    password: str = "correct horse battery",
    **extra: str,
) -> dict[str, str]:
    """GET /authorize → sign-in form → consent form (first form approves) → the redirect's query."""
    page = await http.get("/authorize", params=authorize_params(pkce, **extra))
    assert page.status_code == 200, page.text[:300]
    response = await http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": username,
            "password": password,
        },
    )
    if response.status_code == 200 and 'action="/consent"' in response.text:
        response = await http.post(
            "/consent",
            data={"interaction": hidden_interaction(response.text), "decision": "approve"},
        )
    assert response.status_code == 302, response.text[:300]
    return query_of(response.headers["location"])
