"""Token exchange test setup: the clients of a chain A → B → C, and a trusted foreign issuer whose
keys are served over real HTTP on loopback and whose JWTs PyJWT signs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tokenward.core.records import ClientRecord
from tokenward.deploy.wiring import Services
from tokenward.services.errors import AdminError

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
C_API = "https://c.example/api"
D_API = "https://d.example/api"
FOREIGN_ISSUER = "https://idp.partner.example"
PASSWORD = "correct horse battery"


async def register_exchange_clients(services: Services, web_redirect: str) -> dict[str, str]:
    """web (A: the user's app), svc-b and svc-c (the services down the chain), imp (may
    impersonate), pub (a public client) and nope (no exchange policy); returns the secrets."""
    admin = services.client_admin
    specs: dict[str, dict[str, Any]] = {
        "web": {
            "grant_types": ["authorization_code", "refresh_token", EXCHANGE],
            "scope": "openid profile email read write",
            "redirect_uris": [web_redirect],
            "exchange_audiences": [C_API],
        },
        "svc-b": {
            "grant_types": [EXCHANGE],
            "scope": "read write",
            "redirect_uris": [],
            "exchange_audiences": [C_API, D_API],
        },
        "svc-c": {
            "grant_types": [EXCHANGE, "client_credentials"],
            "scope": "read",
            "redirect_uris": [],
            "exchange_audiences": [D_API],
        },
        "imp": {
            "grant_types": [EXCHANGE],
            "scope": "read write",
            "redirect_uris": [],
            "exchange_audiences": [C_API],
            "exchange_impersonation": True,
        },
        "svc-o": {  # reference tokens: the exchange works the same, resolved by digest
            "grant_types": [EXCHANGE],
            "scope": "read",
            "redirect_uris": [],
            "exchange_audiences": [C_API],
            "token_format": "opaque",
        },
        "nope": {"grant_types": [EXCHANGE], "scope": "read", "redirect_uris": []},
    }
    secrets = {}
    for client_id, spec in specs.items():
        created = await admin.create_client(client_id, **spec)
        secrets[client_id] = created["client_secret"]
    with pytest.raises(AdminError):  # refused at registration
        await admin.create_client(
            "pub", grant_types=[EXCHANGE], scope="read", redirect_uris=[], public=True
        )
    # A public client registered before that rule (or by hand) is refused at the endpoint too.
    await services.stores.clients.put(
        ClientRecord(
            "pub",
            "none",
            (EXCHANGE,),
            frozenset({"read"}),
            created_at=0.0,
            exchange_audiences=(C_API,),
        )
    )
    await services.user_admin.create_user("alice", PASSWORD)
    return secrets


class ForeignIssuer:
    """A partner identity provider: an ES256 key, its JWKS, and JWTs signed by PyJWT."""

    def __init__(self, issuer: str = FOREIGN_ISSUER) -> None:
        self.issuer = issuer
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "partner-1", "alg": "ES256", "use": "sig"}]}

    def token(self, audience: str, now: float, **claims: Any) -> str:
        body = {
            "iss": self.issuer,
            "sub": "partner-user-7",
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + 300,
            "scope": "read write",
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="ES256", headers={"kid": "partner-1"})


@contextmanager
def serve_jwks(jwks: dict[str, Any]) -> Iterator[str]:
    """The key set at http://127.0.0.1:PORT/jwks, served by a real HTTP server in a thread."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
