"""`tokenward serve` as a real process for mTLS tests: terminating TLS itself with client
certificates, or in plain http behind a (trusted or not) proxy's certificate header."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.docs.blocks import documented_command
from tests.e2e.live import free_port
from tests.pki import Issued, Pki

TOKENWARD = str(Path(sys.executable).parent / "tokenward")
DOCUMENTED_SERVE = "tokenward serve --port 8443"


@dataclass
class Served:
    base: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    pki: Pki | None = None

    def cli(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        result = subprocess.run(
            [TOKENWARD, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True, text=True, env=self.env, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"tokenward {' '.join(args)}: {result.stderr}")
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def http(self, cert: Issued | None = None, **kwargs: Any) -> httpx.Client:
        """A client of this server, presenting `cert` in the TLS handshake."""
        verify: ssl.SSLContext | bool = True
        if self.pki is not None:
            verify = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
            if cert is not None:
                verify.load_cert_chain(*cert.files)
        return httpx.Client(base_url=self.base, verify=verify, timeout=10, **kwargs)


def _wait_healthy(served: Served) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"tokenward serve exited: {served.log.read_text()[-2000:]}")
        try:
            with served.http() as http:
                if http.get("/healthz").status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # waiting for a process to bind, not for time to pass
    raise RuntimeError("tokenward serve did not become healthy")


@contextmanager
def serve(
    tmp: Path,
    *,
    pki: Pki | None = None,
    env: dict[str, str] | None = None,
    ca_bundle: Path | None = None,
    port: int | None = None,
) -> Iterator[Served]:
    """With `pki`: https with client certificates optional, chaining to `ca_bundle` (default:
    the PKI's CA). Without: plain http, `env` saying which proxies and header to trust."""
    data_dir = tmp / "data"
    port = port or free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    environment.update(env or {})
    subprocess.run(
        [TOKENWARD, "--data-dir", str(data_dir), "init"], env=environment, check=True,
        capture_output=True,
    )  # fmt: skip
    command = [TOKENWARD, "--data-dir", str(data_dir), "serve", "--port", str(port)]
    scheme = "http"
    if pki is not None:
        server = pki.server()
        scheme = "https"
        # docs/mtls.md's command, with this test's files and port.
        files = {
            "8443": str(port),
            "server.pem": str(server.cert_path),
            "server.key": str(server.key_path),
            "clients-ca.pem": str(ca_bundle or pki.ca.cert_path),
        }
        documented = documented_command("docs/mtls.md", DOCUMENTED_SERVE)
        command = [TOKENWARD, "--data-dir", str(data_dir)]
        command += [files.get(arg, arg) for arg in documented]
    log = tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    served = Served(f"{scheme}://127.0.0.1:{port}", data_dir, environment, process, log, pki)
    try:
        _wait_healthy(served)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
