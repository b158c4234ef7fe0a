"""Several tokenward nodes as separate processes sharing PostgreSQL and Redis (scale-out)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.live import free_port
from tests.store.conftest import PG_URL, require_postgres
from tests.store.redis_server import need_shared_redis
from tokenward.tokens.sealing import generate_master_key

TOKENWARD = str(Path(sys.executable).parent / "tokenward")


@dataclass
class Cluster:
    issuer: str
    nodes: list[str]
    env: dict[str, str]
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schema: str = ""
    redis_url: str = ""

    logs: list[IO[bytes] | None] = field(default_factory=list)

    def start(self, index: int) -> subprocess.Popen[bytes]:
        """Start node `index` on its port (a restart after `stop`); returns once it is healthy."""
        log = self.logs[index]
        process = subprocess.Popen(
            [
                TOKENWARD,
                "--data-dir",
                str(self.data_dir),
                "serve",
                "--port",
                self.nodes[index].rsplit(":", 1)[1],
            ],  # the issuer comes from TOKENWARD_ISSUER, as docs/deployment.md says
            env=self.env,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        )
        try:
            wait_healthy(self.nodes[index], process)
        except BaseException:
            process.kill()  # not yet in `processes`: nobody else would stop it
            process.wait(5)
            raise
        return process

    def restart(self, index: int) -> None:
        """Stop node `index` (as an operator would: SIGTERM) and start it again."""
        process = self.processes[index]
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        self.processes[index] = self.start(index)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [TOKENWARD, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=120,
        )
        return result.stdout

    def service_client(self, client_id: str = "svc", scope: str = "read") -> tuple[str, str]:
        """A client_credentials client created through the CLI: (client_id, secret)."""
        created = json.loads(
            self.cli(
                "client",
                "create",
                "--client-id",
                client_id,
                "--grant-type",
                "client_credentials",
                "--scope",
                scope,
            )
        )
        return client_id, str(created["client_secret"])


async def _schema(name: str, create: bool) -> None:
    engine = create_async_engine(PG_URL)
    async with engine.begin() as connection:
        if create:
            await connection.execute(text(f'CREATE SCHEMA "{name}"'))
        else:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    await engine.dispose()


def wait_healthy(base: str, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node {base} exited with {process.returncode}")
        try:
            if httpx.get(base + path, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"node {base} did not become healthy")


@contextmanager
def cluster(
    tmp: Path,
    nodes: int = 2,
    *,
    redis_url: str | None = None,
    log_dir: Path | None = None,
    **settings: str,
) -> Iterator[Cluster]:
    """`redis_url`: a Redis of the test's own (a fault test stops it); default the shared one.
    `log_dir`: keep each node's output there (server<i>.log) instead of discarding it."""
    require_postgres()
    if redis_url is None:
        redis_url = need_shared_redis()
    schema = "tw_" + secrets.token_hex(6)
    asyncio.run(_schema(schema, create=True))
    lb_port = free_port()  # the address a load balancer would have; the issuer of every node
    env = {
        **os.environ,
        "TOKENWARD_DATABASE_URL": PG_URL,
        "TOKENWARD_DATABASE_SCHEMA": schema,
        "TOKENWARD_REDIS_URL": redis_url,
        "TOKENWARD_MASTER_KEY": generate_master_key(),
        "TOKENWARD_ISSUER": f"http://127.0.0.1:{lb_port}",
        **{f"TOKENWARD_{name.upper()}": value for name, value in settings.items()},
    }
    group = Cluster(env["TOKENWARD_ISSUER"], [], env, tmp, schema=schema, redis_url=redis_url)
    logs: list[IO[bytes]] = []
    try:
        group.cli("init")  # keys are created once, in the shared database
        for index in range(nodes):
            # The first node listens on the issuer's address, so discovery there works (a
            # gateway in remote mode reads it); the others are reached directly.
            port = lb_port if index == 0 else free_port()
            if log_dir is not None:
                logs.append((log_dir / f"server{index}.log").open("wb"))
            group.logs.append(logs[-1] if log_dir is not None else None)
            group.nodes.append(f"http://127.0.0.1:{port}")
            group.processes.append(group.start(index))
        yield group
    finally:
        for process in group.processes:
            process.terminate()
        for process in group.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        asyncio.run(_schema(schema, create=False))


@contextmanager
def gateway_processes(
    group: Cluster, tmp: Path, count: int, config: Callable[[int], str]
) -> Iterator[list[str]]:
    """`count` `tokenward gateway` processes, the i-th on a free port with the YAML
    `config(port)`, logging to tmp/gateway<i>.log; their base URLs once each is healthy."""
    with ExitStack() as stack:
        processes: list[subprocess.Popen[bytes]] = []

        def terminate() -> None:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

        stack.callback(terminate)
        bases: list[str] = []
        for index in range(count):
            port = free_port()
            path = tmp / f"gateway{index}.yaml"
            path.write_text(config(port))
            log = stack.enter_context((tmp / f"gateway{index}.log").open("wb"))
            processes.append(
                subprocess.Popen(
                    [TOKENWARD, "gateway", "--config", str(path)],
                    env=group.env,
                    stdout=log,  # structlog: warnings help when a test fails
                    stderr=subprocess.STDOUT,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
            wait_healthy(bases[-1], processes[-1], path="/healthz")
        yield bases
