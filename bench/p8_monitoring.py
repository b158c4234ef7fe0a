"""P8: throughput with monitoring on ÷ off (goal ≥ 0.95), at the gateway and at the server.

The issue's figure is the gateway's (bench/p8_gateway.py): "P8". This module adds "P8s", the
authorization server's own protected API, GET /api/hello with a cached bearer token, over real
HTTP: one uvicorn process (uvloop + httptools) on one core, wrk with one thread on the other.
"on" is the server as shipped (the monitor middleware emits one event per request; the
monitor's task drains them in the same process and runs every detector, so the analytics' CPU
is paid in this figure too, unlike at the gateway); "off" is the same server with
`TOKENWARD_MONITOR_ENABLED=false` (no middleware, no events). Rounds alternate the order (off,
on / on, off); the figure is the geometric mean of the per-round ratios, so a bias towards the
first or second run of a round cancels.

`python -m bench.p8_monitoring --serve --port P --monitor on|off` is the server process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import p8_gateway
from bench.harness import Figure

DURATION = "3s"
CONNECTIONS = "32"
ROUNDS = 8  # even: as many rounds in each order
_LUA = 'wrk.headers["Authorization"] = {auth}\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(monitor: str) -> Iterator[tuple[str, str]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.p8_monitoring",
            "--serve",
            "--port",
            str(port),
            "--monitor",
            monitor,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    token = json.loads(process.stdout.readline())["token"]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base + "/api/hello", headers={"authorization": f"Bearer {token}"})
            if response.status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base, token
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def wrk(url: str, token: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA.format(auth=json.dumps(f"Bearer {token}")))
    try:
        result = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "-s", script.name, url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        os.unlink(script.name)
    if "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk saw failed responses:\n{result.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout + result.stderr)
    return float(match.group(1))


def run() -> list[Figure]:
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        raise RuntimeError("wrk and nginx are needed for P8: apt-get install -y wrk nginx")
    return [*p8_gateway.run(), *_server()]


def _server() -> list[Figure]:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with server("off") as off_server, server("on") as on_server:
        urls = {"off": off_server, "on": on_server}
        for name in ("off", "on"):  # warm both up
            wrk(urls[name][0] + "/api/hello", urls[name][1])
        for round_ in range(ROUNDS):
            # ABBA: the second of two back-to-back runs measured ~9% slower in an off/off
            # A/A test here, so each round swaps the order and the orders' bias cancels.
            for name in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                base, token = urls[name]
                rates[name].append(wrk(base + "/api/hello", token))
        health = httpx.get(on_server[0] + "/bench/health").json()
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    ratio = statistics.geometric_mean(ratios)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"  P8: /api/hello off {off:,.0f}/s, on {on:,.0f}/s; monitor processed "
        f"{health['processed']:,} events, dropped {health['dropped']:,}"
    )
    return [
        Figure(
            "P8s",
            ratio,
            "server throughput with monitoring on ÷ off, /api/hello over HTTP",
            [
                "goal ≥ 0.95",
                f"off {off:,.0f}/s, on {on:,.0f}/s",
                f"{health['processed']:,} events analysed, {health['dropped']:,} dropped",
            ],
        )
    ]


# --- the server process --------------------------------------------------------------------------
async def prepare(port: int, monitor: bool) -> tuple[Any, str]:
    from pydantic import SecretStr

    from tokenward.config import Settings
    from tokenward.deploy.deployment import server_app
    from tokenward.deploy.wiring import build_services, memory_stores
    from tokenward.monitor.config import MonitorSettings
    from tokenward.tokens.sealing import generate_master_key

    settings = Settings(
        issuer=f"http://127.0.0.1:{port}", master_key=SecretStr(generate_master_key())
    )
    monitor_settings = MonitorSettings(enabled=monitor, audit_log="off")
    services = await build_services(settings, memory_stores(), monitor_settings=monitor_settings)
    created = await services.client_admin.create_client(
        "bench", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    app = server_app(services)
    from tokenward.server.edge import JSONResponse

    @app.get("/bench/health", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse(services.monitor.health())

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        response = await http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=("bench", created["client_secret"]),
        )
    return app, response.json()["access_token"]


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--monitor", choices=["on", "off"], required=True)
    args = parser.parse_args()
    app, token = asyncio.run(prepare(args.port, args.monitor == "on"))
    print(json.dumps({"token": token}), flush=True)
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


if __name__ == "__main__":
    main()
