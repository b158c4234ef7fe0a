"""The floor for P4 and P5: the least a Python ASGI server does to answer a client_credentials
request, and an introspection.

uvicorn with httptools and uvloop (what `tokenward serve` runs on) and one bare ASGI callable.
`/token`: read the form body, check the Basic credentials (constant time), sign an ES256 JWT
with `cryptography`, answer the token JSON (for the opaque client, `bench-opaque`, a random
opaque token instead, as P5 introspects opaque tokens). `/introspect`: read the form, check
`bench-opaque`'s Basic credentials, answer an active token's claims JSON, with no lookup at
all. No framework, no store, no log line, no metrics, no revocation or policy checks.
tokenward ÷ this says what tokenward's own request path costs; this ÷ oidc-provider says how
far any CPython server on the same stack could go.

    uvicorn bench.floor_app:app --loop uvloop --http httptools --no-access-log --port N
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import time
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

SECRET = "bench-secret-" + "x" * 40  # bench/contenders.py's SECRET
EXPECTED = b"Basic " + base64.b64encode(f"bench:{SECRET}".encode())
EXPECTED_OPAQUE = b"Basic " + base64.b64encode(f"bench-opaque:{SECRET}".encode())
ISSUER = "http://127.0.0.1"
KEY = ec.generate_private_key(ec.SECP256R1())
HEADER = base64.urlsafe_b64encode(
    json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "floor"}).encode()
).rstrip(b"=")
MAX_BODY = 64 * 1024


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _jwt(claims: dict[str, Any]) -> str:
    signing_input = HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    r, s = decode_dss_signature(KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return (signing_input + b"." + _b64(signature)).decode()


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            await _answer(send, 413, {"error": "invalid_request"})
            return
        if not message.get("more_body"):
            break
    authorization = dict(scope["headers"]).get(b"authorization", b"")
    opaque = hmac.compare_digest(authorization, EXPECTED_OPAQUE)
    if scope["path"] == "/introspect" and opaque:
        await _introspect(send, dict(parse_qsl(body.decode())))
        return
    if scope["path"] != "/token" or not (opaque or hmac.compare_digest(authorization, EXPECTED)):
        await _answer(send, 401, {"error": "invalid_client"})
        return
    form = dict(parse_qsl(body.decode()))
    if form.get("grant_type") != "client_credentials":
        await _answer(send, 400, {"error": "unsupported_grant_type"})
        return
    if opaque:
        answer = {"access_token": _b64(os.urandom(32)).decode(), "token_type": "Bearer"}
        await _answer(send, 200, {**answer, "expires_in": 300})
        return
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "bench",
        "aud": ISSUER,
        "client_id": "bench",
        "scope": form.get("scope", ""),
        "iat": now,
        "exp": now + 300,
        "jti": _b64(os.urandom(16)).decode(),
    }
    await _answer(
        send,
        200,
        {"access_token": _jwt(claims), "token_type": "Bearer", "expires_in": 300},
    )


async def _introspect(send: Any, form: dict[str, str]) -> None:
    """Any token is active: the floor looks nothing up."""
    if not form.get("token"):
        await _answer(send, 400, {"error": "invalid_request"})
        return
    now = int(time.time())
    claims = {
        "active": True,
        "iss": ISSUER,
        "sub": "bench-opaque",
        "aud": ISSUER,
        "client_id": "bench-opaque",
        "scope": "read",
        "iat": now,
        "exp": now + 300,
        "token_type": "Bearer",
    }
    await _answer(send, 200, claims)
