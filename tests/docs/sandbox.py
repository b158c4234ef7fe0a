"""What a reader of the docs has at hand: a working directory, `tokenward` on PATH, a server
started the way users start it (`tokenward serve` on its default data dir, `./var`), an API
protected by the README's validator, and the placeholders the docs use mapped to them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI

from tests.e2e.live import free_port, serve_in_thread
from tokenward.core.claims import AccessToken
from tokenward.guard import RemoteJwks, RemoteRevocations, Validator
from tokenward.resource.fastapi import require_scopes

BIN = Path(sys.executable).parent
AUTH_PLACEHOLDER = "https://auth.example.com"
API_PLACEHOLDER = "https://api.example.com"
LOOPBACK_PORT = re.compile(
    r"(?P<before>(?:127\.0\.0\.1|localhost|\[::1\]):|--port[ =])(?P<port>\d{2,5})\b"
)


@dataclass
class Sandbox:
    cwd: Path
    env: dict[str, str]
    auth: str  # the running server's base URL (= its issuer)
    api: str  # an API that accepts this server's tokens with scope orders:read
    secrets: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[str, str] = field(default_factory=dict)  # a port the page names -> ours

    def substitute(self, text: str) -> str:
        """The page's placeholders, and every loopback port it names mapped to a free one
        (the same one each time), so pages run side by side."""
        text = LOOPBACK_PORT.sub(self._port, text)  # before the placeholders bring ours in
        return text.replace(AUTH_PLACEHOLDER, self.auth).replace(API_PLACEHOLDER, self.api)

    def _port(self, match: re.Match[str]) -> str:
        written = match.group("port")
        if written not in self.ports:
            self.ports[written] = str(free_port())
        return match.group("before") + self.ports[written]

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, command: str, health: str, env: dict[str, str] | None = None) -> str:
        """A command that serves until stopped: started in its own process group, returns
        its output so far once `health` answers."""
        log = self.cwd / f"background{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.cwd,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append(process)
        wait_for(health, process, log)
        return log.read_text()

    def stop_background(self) -> None:
        for process in self.background:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.background:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.background.clear()


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {limit} s:\n{log.read_text()[-3000:]}")


def reader_env(cwd: Path) -> dict[str, str]:
    """A clean environment: no TOKENWARD_* of the test run, `tokenward` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(cwd)
    env["XDG_CONFIG_HOME"] = str(cwd / ".config")
    return env


def protected_api(issuer: str, audience: str) -> FastAPI:
    """The README's API, built the same way."""
    validator = Validator(
        issuer=issuer,
        audience=audience,
        keys=RemoteJwks(issuer + "/jwks"),
        revocations=RemoteRevocations(issuer),
    )
    app = FastAPI()
    reader = Depends(require_scopes("orders:read", validator=validator))

    @app.get("/orders")
    async def orders(token: AccessToken = reader) -> dict[str, object]:
        return {"subject": token.sub, "scopes": sorted(token.scopes)}

    return app


@contextmanager
def sandbox(root: Path, clients: dict[str, str]) -> Iterator[Sandbox]:
    """`clients`: client_id -> scope of the client_credentials clients to register."""
    cwd = root / "reader"
    cwd.mkdir()
    env = reader_env(cwd)
    auth_port, api_port = free_port(), free_port()
    auth = f"http://127.0.0.1:{auth_port}"
    api = f"http://127.0.0.1:{api_port}"
    # Tokens for the API: its URL is the server's default audience (a documented setting).
    env["TOKENWARD_DEFAULT_AUDIENCE"] = api
    box = Sandbox(cwd, env, auth, api)
    with ExitStack() as stack:
        stack.callback(box.stop_background)
        box.run("tokenward init").check_returncode()
        for client_id, scope in clients.items():
            created = box.run(
                f"tokenward client create --client-id {shlex.quote(client_id)} "
                f"--grant-type client_credentials --scope {shlex.quote(scope)}"
            )
            created.check_returncode()
            box.secrets[client_id] = json.loads(created.stdout)["client_secret"]
        box.start(f"tokenward serve --port {auth_port}", auth + "/healthz")
        stack.enter_context(serve_in_thread(protected_api(auth, api), api_port))
        yield box
