"""The floor for P4: the least a Python ASGI server does to answer a client_credentials request.

uvicorn with httptools and uvloop (what `tokenward serve` runs on) and one bare ASGI callable:
read the form body, check the Basic credentials (constant time), sign an ES256 JWT with
`cryptography`, answer the token JSON. No framework, no store, no log line, no metrics, no
revocation or policy checks. tokenward ÷ this says what tokenward's own request path costs;
this ÷ oidc-provider says how far any CPython server on the same stack could go.

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
    if scope["path"] != "/token" or not hmac.compare_digest(authorization, EXPECTED):
        await _answer(send, 401, {"error": "invalid_client"})
        return
    form = dict(parse_qsl(body.decode()))
    if form.get("grant_type") != "client_credentials":
        await _answer(send, 400, {"error": "unsupported_grant_type"})
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
