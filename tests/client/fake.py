"""A scripted authorization server and resource behind httpx.MockTransport, for the protocol
corners a real server will not produce on demand (a resource that always refuses, a token
endpoint that always wants a new nonce, a server that does not rotate)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from tests.conftest import FrozenClock
from tokenward.client import ClientCredentials, Http
from tokenward.tokens.jws import parse_compact, payload_object

ISSUER = "https://as.example"
API = "https://api.example/data"
Handler = Callable[[httpx.Request], httpx.Response]


def challenge(error: str, scheme: str = "Bearer", **headers: str) -> httpx.Response:
    header = f'{scheme} realm="api", error="{error}", error_description="no"'
    return httpx.Response(401, headers={"www-authenticate": header, **headers})


def proof_claims(request: httpx.Request) -> dict[str, Any]:
    return payload_object(parse_compact(request.headers["dpop"], embedded_jwk=True))


@dataclass
class FakeServers:
    lifetime: int = 300
    rotate: bool = True
    token_script: list[Handler] = field(default_factory=list)
    resource_script: list[Handler] = field(default_factory=list)
    metadata_hits: int = 0
    token_forms: list[dict[str, str]] = field(default_factory=list)
    resource_requests: list[httpx.Request] = field(default_factory=list)
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url.path == "/.well-known/openid-configuration":
                self.metadata_hits += 1
                return httpx.Response(200, json=self.metadata())
            if request.url.path == "/token":
                form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
                self.token_forms.append(form)
                if self.token_script:
                    return self.token_script.pop(0)(request)
                return self.issue(request, form)
            # A copy: httpx sends a retried request as the same object with new headers.
            self.resource_requests.append(
                httpx.Request(
                    request.method, request.url, headers=request.headers, content=request.content
                )
            )
            if self.resource_script:
                return self.resource_script.pop(0)(request)
            return httpx.Response(200, json={"ok": True})

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "token_endpoint": f"{ISSUER}/token",
            "device_authorization_endpoint": f"{ISSUER}/device_authorization",
        }

    def issue(self, request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        self.issued += 1
        body: dict[str, Any] = {
            "access_token": f"at-{self.issued}",
            "token_type": "DPoP" if "dpop" in request.headers else "Bearer",
            "expires_in": self.lifetime,
        }
        grant = form.get("grant_type")
        # RFC 6749 §4.4.3: no refresh token for client credentials.
        if grant != "client_credentials" and (self.rotate or grant != "refresh_token"):
            body["refresh_token"] = f"rt-{self.issued}"
        return httpx.Response(200, json=body)

    def grants(self) -> list[str]:
        return [form.get("grant_type", "") for form in self.token_forms]


def source(
    servers: FakeServers, clock: FrozenClock, **options: Any
) -> tuple[ClientCredentials, httpx.Client]:
    client = httpx.Client(transport=httpx.MockTransport(servers))
    return (
        ClientCredentials(ISSUER, "svc", "s3cret-value", http=Http(client), clock=clock, **options),
        client,
    )
