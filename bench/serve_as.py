"""A benchmark server process: the authorization server on memory stores, or a bare ASGI app.

`python -m bench.serve_as --port P --mode token|introspect|hello` prints one JSON line with
what the load generator needs (credentials, a token), then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import uvicorn
from pydantic import SecretStr

from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.tokens.sealing import generate_master_key

SECRET = "bench-secret-" + "x" * 40


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: the smallest ASGI app that reads the body and answers JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"hello":"world"}'})


CALLBACK = "http://127.0.0.1:9/cb"  # never contacted: the load generator reads the redirect
PASSWORD = "bench password " + "y" * 16


async def prepare_flows(port: int) -> tuple[Any, dict[str, str]]:
    """For the code flow, plain and pushed (PAR): a confidential web client that skips consent,
    and a user to sign in once."""
    issuer = f"http://127.0.0.1:{port}"
    services = await build_services(
        Settings(issuer=issuer, master_key=SecretStr(generate_master_key())), memory_stores()
    )
    await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code"],
        scope="read",
        redirect_uris=[CALLBACK],
        secret=SECRET,
        skip_consent=True,
    )
    await services.user_admin.create_user("bench", PASSWORD)
    info = {"client_id": "web", "secret": SECRET, "redirect_uri": CALLBACK}
    return server_app(services), {**info, "username": "bench", "password": PASSWORD}


async def prepare(port: int, token_format: str) -> tuple[Any, dict[str, str]]:
    issuer = f"http://127.0.0.1:{port}"
    services = await build_services(
        Settings(issuer=issuer, master_key=SecretStr(generate_master_key())), memory_stores()
    )
    await services.client_admin.create_client(
        "bench",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
        secret=SECRET,
        token_format=token_format,
    )
    return server_app(services), {"client_id": "bench", "secret": SECRET}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["as", "as-opaque", "as-flows", "hello"], required=True)
    args = parser.parse_args()
    if args.mode == "hello":
        app: Any = hello_app
        info: dict[str, str] = {}
    elif args.mode == "as-flows":
        app, info = asyncio.run(prepare_flows(args.port))
    else:
        app, info = asyncio.run(prepare(args.port, "opaque" if args.mode == "as-opaque" else "jwt"))
    print(json.dumps(info), flush=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
