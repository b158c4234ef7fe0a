"""The floor for P3C: the least a Python ASGI service does to answer a proxy's check.

uvicorn with httptools and uvloop (what `tokenward gateway` runs on) and one bare ASGI
callable: compare the bearer credential with the one expected (constant time) and answer 200
with the identity headers, or 401. No token parsing or signature cache, no route table, no
rate limit, audit line or metrics. The documented nginx `auth_request` configuration in front
of this, ÷ nginx `proxy_pass` alone, says how far any decision service on this stack could
take P3C; the gateway ÷ this, what the gateway's own decision costs on top.

    P3C_FLOOR_TOKEN=... uvicorn bench.authz_floor:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import hmac
import os
from typing import Any

EXPECTED = b"Bearer " + os.environ.get("P3C_FLOOR_TOKEN", "").encode()
ALLOWED = [
    (b"x-auth-subject", b"user-0"),
    (b"x-auth-client-id", b"bench-client"),
    (b"x-auth-scope", b"read write"),
    (b"cache-control", b"no-store"),
    (b"content-length", b"0"),
]
REFUSED = [(b"www-authenticate", b"Bearer"), (b"content-length", b"0")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    authorization = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
    allowed = bool(EXPECTED[7:]) and hmac.compare_digest(authorization, EXPECTED)
    status, headers = (200, ALLOWED) if allowed else (401, REFUSED)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
