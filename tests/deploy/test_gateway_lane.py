"""The gateway's checks in the express lane (deploy/gateway.py `with_check_lane`): which
requests it takes, and that every check is answered byte for byte as uvicorn's guarded
protocol alone answers it."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable

import pytest
import uvicorn
from uvicorn.server import ServerState

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.serving.test_express import Client, Transport
from tests.serving.test_protocol import until
from tokenward.deploy.gateway import with_check_lane
from tokenward.gateway.app import Gateway
from tokenward.gateway.audit import AuditLog
from tokenward.gateway.config import GatewayConfig, parse_config
from tokenward.gateway.serving import http_protocol
from tokenward.guard import Validator
from tokenward.serving.express import ExpressProtocol

CONFIG = f"""
trust: {{issuer: {ISSUER}, audience: {AUDIENCE}}}
trusted_proxies: [127.0.0.1/32]
authz: {{mode: nginx{{path}}}}
routes:
  - name: items
    prefix: /items
    upstreams: [http://127.0.0.1:9]
    auth: bearer
    scopes: [read]
"""


def gateway_config(path: str = "", *, authz: bool = True, tls: str = "") -> GatewayConfig:
    text = CONFIG.replace("{path}", f", path: {path}" if path else "")
    if not authz:
        text = text.replace(text[text.index("authz:") : text.index("routes:")], "")
    return parse_config(text + tls, "test.yaml")


def test_the_lane_takes_bodyless_gets_on_the_check_path_only() -> None:
    base = http_protocol()
    lane = with_check_lane(base, gateway_config())
    assert issubclass(lane, ExpressProtocol)
    assert lane.routes == frozenset({(b"GET", b"/_authz")})
    assert lane.max_body == 0
    assert lane.fallback is base
    moved = with_check_lane(base, gateway_config("/check"))
    assert moved.routes == frozenset({(b"GET", b"/check")})


def test_without_authz_or_on_a_tls_listener_there_is_no_lane() -> None:
    base = http_protocol()
    assert with_check_lane(base, gateway_config(authz=False)) is base
    tls = "tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}\n"
    assert with_check_lane(base, gateway_config(tls=tls)) is base


def check(*extra: bytes, method: bytes = b"GET", target: bytes = b"/_authz") -> bytes:
    head = [method + b" " + target + b" HTTP/1.1", b"Host: tokenward", *extra]
    return b"\r\n".join([*head, b"", b""])


ORIGINAL = (b"X-Original-Method: GET", b"X-Original-URI: /items/1", b"X-Original-Host: api")


def corpus(token: str) -> dict[str, tuple[bytes, bool, int]]:
    """Each check, whether the lane serves it itself, and its status (nginx mode: a refusal
    other than 401 is a 403 with the real status in a header)."""
    bearer = b"Authorization: Bearer " + token.encode()
    return {
        "allowed": (check(*ORIGINAL, bearer), True, 200),
        "no token": (check(*ORIGINAL), True, 401),
        "a forged token": (check(*ORIGINAL, b"Authorization: Bearer x.y.z"), True, 401),
        "no original URI": (check(ORIGINAL[0], ORIGINAL[2], bearer), True, 403),
        "two original URIs": (check(*ORIGINAL, b"X-Original-URI: /admin", bearer), True, 403),
        "a traversal": (check(ORIGINAL[0], b"X-Original-URI: /items/../admin", bearer), True, 403),
        "a HEAD": (check(*ORIGINAL, bearer, method=b"HEAD"), False, 200),
        "below the path": (check(*ORIGINAL, bearer, target=b"/_authz/items"), False, 200),
        "a query": (check(*ORIGINAL, bearer, target=b"/_authz?x=1"), False, 200),
        "a body": (check(*ORIGINAL, bearer, b"Content-Length: 2")[:-2] + b"\r\n\r\nab", False, 400),
        "a proxied request": (check(bearer, target=b"/items/1"), False, 502),
    }


@pytest.mark.parametrize(
    "name",
    [
        "allowed",
        "no token",
        "a forged token",
        "no original URI",
        "two original URIs",
        "a traversal",
        "a HEAD",
        "below the path",
        "a query",
        "a body",
        "a proxied request",
    ],
)
def test_every_check_is_answered_as_uvicorns_protocol_answers_it(
    name: str, validator: Validator, clock: FrozenClock, mint: Callable[..., str]
) -> None:
    config = gateway_config()
    request_bytes, in_lane, status = corpus(mint())[name]

    async def main() -> None:
        outcomes = []
        plain = http_protocol()
        for protocol in (with_check_lane(plain, config), plain):
            # A gateway each: the answers carry its rate-limit state.
            app = Gateway(config, validator, clock=clock, audit=AuditLog(io.BytesIO()))
            made = uvicorn.Config(app, lifespan="off", log_config=None, proxy_headers=False)
            made.load()
            client = Client(protocol, ServerState(), made)
            client.send(request_bytes)
            transport: Transport = client.transport

            def headed(watched: Transport = transport) -> bool:
                return b"\r\n\r\n" in watched.written

            await until(headed)
            await asyncio.sleep(0.02)  # the rest of an answer, if it has a body
            if protocol is not plain:
                assert client.in_lane() is in_lane
            written = re.sub(rb"\r\ndate: [^\r]*\r\n", b"\r\ndate: -\r\n", client.written)
            outcomes.append(written)
        assert outcomes[0] == outcomes[1]
        assert outcomes[0].startswith(b"HTTP/1.1 %d " % status)

    asyncio.run(main())
