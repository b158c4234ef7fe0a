"""`tokenward gateway` and `tokenward serve` as real processes, for the tests of what only a
process shows: startup failures (stderr, exit status), the listening line, local trust beside a
separate server."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.cluster import TOKENWARD, wait_healthy
from tests.e2e.live import free_port

LISTENING = re.compile(
    r"^tokenward gateway listening on (?P<base>https?://\S+?)"
    r"(?: \(metrics on (?P<admin>http://\S+?)/metrics, health on \S+ and \S+\))?"
    r"(?: \(\d+ workers\))?$"
)
START_TIMEOUT = 60.0  # seconds; startup imports a lot on a shared 2-core machine


@dataclass
class RunningGateway:
    base: str
    admin: str | None
    process: subprocess.Popen[bytes]
    stderr: Path


@contextmanager
def gateway_process(
    config: Path,
    env: Mapping[str, str],
    *,
    global_args: Sequence[str] = (),
) -> Iterator[RunningGateway]:
    """`tokenward [global_args] gateway --config config`, until it prints where it listens
    (its stderr goes to a file next to the config, read by the wait)."""
    stderr = config.with_suffix(".stderr")
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [TOKENWARD, *global_args, "gateway", "--config", str(config)],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        match = _listening(process, stderr)
        yield RunningGateway(match["base"], match["admin"], process, stderr)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listening(process: subprocess.Popen[bytes], stderr: Path) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        first = stderr.read_text().split("\n", 1)[0]
        match = LISTENING.match(first)
        if match is not None:
            return match
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited {process.returncode}: {stderr.read_text()}")
        time.sleep(0.05)  # bounded wait for the other process to start
    raise AssertionError(f"the gateway did not say where it listens: {stderr.read_text()!r}")


def refused(
    config: Path, env: Mapping[str, str], *, global_args: Sequence[str] = ()
) -> tuple[int, str]:
    """Run a gateway that must not start: (exit status, stderr)."""
    result = subprocess.run(
        [TOKENWARD, *global_args, "gateway", "--config", str(config)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stderr


@contextmanager
def server_process(
    data_dir: Path, env: Mapping[str, str], port: int | None = None, issuer: str | None = None
) -> Iterator[str]:
    """`tokenward --data-dir D serve` on `port` (default: a free one); its base URL once up."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            TOKENWARD,
            "--data-dir",
            str(data_dir),
            "serve",
            "--port",
            str(port),
            "--issuer",
            issuer or base,
        ],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(base, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def cli(data_dir: Path, env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [TOKENWARD, "--data-dir", str(data_dir), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def service_client(data_dir: Path, env: Mapping[str, str]) -> tuple[str, str]:
    created = json.loads(
        cli(
            data_dir,
            env,
            *("client", "create", "--client-id", "svc", "--grant-type", "client_credentials"),
            *("--scope", "read"),
        )
    )
    return "svc", str(created["client_secret"])


def token(server: str, client: tuple[str, str]) -> str:
    response = httpx.post(f"{server}/token", data={"grant_type": "client_credentials"}, auth=client)
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


def refused_within(url: str, bearer: str, seconds: float) -> float:
    """Poll `url` with the token until it is refused (401); how long that took."""
    started = time.monotonic()
    with httpx.Client() as http:
        while True:
            status = http.get(url, headers={"authorization": f"Bearer {bearer}"}).status_code
            elapsed = time.monotonic() - started
            if status == 401:
                return elapsed
            assert status == 200, status
            assert elapsed < seconds, f"still admitted after {elapsed:.2f} s"
            time.sleep(0.02)  # bounded poll for another process's revocation to arrive
