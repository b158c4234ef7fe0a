"""P4 client-credentials issuance and P5 introspection over HTTP on loopback, with wrk.

One uvicorn process (uvloop + httptools) on one core, wrk with one thread on the other. The
baseline is the bare ASGI hello-world on the same server stack, measured in the same run, and
the reference figure is oidc-provider's published ~1.6-2.0k ES256 JWT issuances/s on this kind
of machine (the issue's number; not re-measured here).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.harness import Figure

DURATION = "5s"
CONNECTIONS = "32"
OIDC_PROVIDER_ES256 = 1800.0  # midpoint of the 1.6-2.0k requests/s the issue quotes
_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {auth}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(mode: str) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_as", "--port", str(port), "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    info = json.loads(process.stdout.readline())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(base + "/healthz" if mode == "hello" else base + "/token", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base, info
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def wrk(url: str, body: str, authorization: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA.format(body=json.dumps(body), auth=json.dumps(authorization)))
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
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} failed responses:\n{result.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout + result.stderr)
    return float(match.group(1))


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def run() -> list[Figure]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is needed for P4/P5: apt-get install -y wrk")
    with server("hello") as (base, _):
        hello = wrk(base + "/", "grant_type=client_credentials", "Basic eA==")
    rates: dict[str, float] = {}
    for mode in ("as", "as-opaque"):
        with server(mode) as (base, info):
            auth = _basic(info["client_id"], info["secret"])
            rates[mode] = wrk(base + "/token", "grant_type=client_credentials&scope=read", auth)
            if mode == "as":
                token = httpx.post(
                    base + "/token",
                    data={"grant_type": "client_credentials"},
                    headers={"authorization": auth},
                ).json()["access_token"]
                rates["introspect"] = wrk(base + "/introspect", f"token={token}", auth)
    print(
        f"  P4: hello-world {hello:,.0f}/s, ES256 JWT issuance {rates['as']:,.0f}/s, "
        f"opaque {rates['as-opaque']:,.0f}/s; P5: introspection {rates['introspect']:,.0f}/s"
    )
    return [
        Figure(
            "P4",
            rates["as"],
            "client-credentials ES256 JWTs/s over HTTP, 1 server core",
            [
                f"{rates['as'] / OIDC_PROVIDER_ES256:.2f}× oidc-provider's ~1.8k",
                f"{rates['as'] / hello:.2f}× bare ASGI hello-world ({hello:,.0f}/s)",
                f"opaque {rates['as-opaque']:,.0f}/s",
            ],
        ),
        Figure(
            "P5",
            rates["introspect"],
            "introspections/s over HTTP, 1 server core",
            [
                f"{rates['introspect'] / hello:.2f}× bare ASGI hello-world",
            ],
        ),
    ]
