"""Certificate-bound tokens at a service of your own: docs/mtls.md's uvicorn block (TLS with
optional client certificates, `with_client_certificates`, `BearerAuthMiddleware`) run as
written, with this test's files and port, and called over loopback with httpx."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.docs.blocks import documented
from tests.e2e.live import free_port
from tests.pki import Issued, Pki
from tokenward.core.client_certs import ClientCertificate
from tokenward.guard import Validator
from tokenward.resource.asgi import STATE_KEY


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    token = scope["state"][STATE_KEY]
    body = token.sub.encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def service(pki: Pki, validator: Validator) -> Iterator[str]:
    block = documented("docs/mtls.md", "python", "import uvicorn")
    server_cert = pki.server()
    port = free_port()
    text = block.text
    for written, actual in (
        ("uvicorn.run(", "_run("),
        ("port=9443", f"port={port}"),
        ('"api.pem"', repr(str(server_cert.cert_path))),
        ('"api.key"', repr(str(server_cert.key_path))),
        ('"clients-ca.pem"', repr(str(pki.ca.cert_path))),
    ):
        assert written in text, written
        text = text.replace(written, actual)
    servers: list[uvicorn.Server] = []

    def run(app: Any, **options: Any) -> None:  # uvicorn.run, in a thread we can stop
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
        servers.append(server)
        threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()

    namespace = {"app": hello, "validator": validator, "_run": run}
    exec(compile("\n" * block.line + text, "docs/mtls.md", "exec"), namespace)  # noqa: S102
    deadline = time.monotonic() + 10
    while not servers[0].started:
        assert time.monotonic() < deadline, "the documented service did not start"
        time.sleep(0.01)  # waiting for a thread to bind, not for time to pass
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        servers[0].should_exit = True


def _client(pki: Pki, cert: Issued | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if cert is not None:
        context.load_cert_chain(*cert.files)
    return httpx.Client(verify=context, timeout=10)


def test_documented_service_over_tls(service: str, pki: Pki, mint: Callable[..., str]) -> None:
    mine, other = pki.issue("mine", "mine"), pki.issue("other", "other")
    bound = mint(cnf={"x5t#S256": ClientCertificate(mine.der).x5t_s256})
    auth = {"authorization": f"Bearer {bound}"}
    with _client(pki, mine) as http:
        for _ in range(2):  # cold, then cached: compared both times
            response = http.get(service + "/orders", headers=auth)
            assert response.status_code == 200
            assert response.text == "alice"
        assert (
            http.get(service + "/orders", headers={"authorization": f"Bearer {mint()}"}).status_code
            == 200
        )
    for cert in (None, other):
        with _client(pki, cert) as http:
            refused = http.get(service + "/orders", headers=auth)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
