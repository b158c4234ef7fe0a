"""The Dockerfile and compose.yaml, checked without a container engine (none runs here; CI
builds the image when one does: .ci/run).

Static checks: the image runs as an unprivileged user, its entry point is this project's
console script, its health check needs only Python; compose.yaml gives every tokenward process
the settings docs/deployment.md documents, the same values everywhere, one issuer. Then the
compose topology itself runs as plain processes: each service's command and environment as
compose.yaml says, with host names and ports rewritten to free loopback ports, and the
database (the postgres image's credentials there) replaced by this machine's PostgreSQL in a
private schema. A token is issued through the gateway (the balancer), admitted on /api with
the identity headers, revoked, refused; the image's HEALTHCHECK command passes on every node.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.e2e.cluster import TOKENWARD, _schema
from tests.e2e.live import free_port
from tests.gateway.processes import refused_within
from tests.store.conftest import PG_URL, require_postgres
from tests.store.redis_server import need_shared_redis
from tokenward.gateway.config import load_config
from tokenward.tokens.sealing import generate_master_key

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {
    "TOKENWARD_ISSUER",
    "TOKENWARD_MASTER_KEY",
    "TOKENWARD_DATABASE_URL",
    "TOKENWARD_REDIS_URL",
}
# Documented beside them: a schema of one's own, and the balancers whose X-Forwarded-For counts.
OPTIONAL = {"TOKENWARD_DATABASE_SCHEMA", "TOKENWARD_TRUSTED_PROXIES"}


# --- the Dockerfile -------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    argument: str

    def exec_form(self) -> list[str]:
        """A JSON-array argument (`CMD ["a", "b"]`), after any `--options`."""
        text = self.argument[self.argument.index("[") :]
        value: list[str] = json.loads(text)
        return value


def dockerfile() -> list[Instruction]:
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in joined.splitlines()]
    instructions = []
    for line in lines:
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), argument.strip()))
    return instructions


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last_from = max(i for i, item in enumerate(instructions) if item.keyword == "FROM")
    return instructions[last_from:]


def test_the_image_is_slim_python_3_11_and_runs_as_an_unprivileged_user() -> None:
    stage = final_stage()
    assert stage[0].argument == "python:3.11-slim"
    users = [item.argument for item in stage if item.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(item.argument for item in stage if item.keyword == "RUN")
    assert f"--uid {user}" in created  # the user exists in the image


def test_the_entrypoint_is_this_projects_console_script() -> None:
    entrypoint = next(item for item in final_stage() if item.keyword == "ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint.exec_form() == ["tokenward"]
    assert scripts["tokenward"] == "tokenward.deploy.cli:main"
    default = next(item for item in final_stage() if item.keyword == "CMD").exec_form()
    assert "serve" in default
    # The image installs this project (the wheel built from `.` in the build stage).
    built = " ".join(item.argument for item in dockerfile() if item.keyword == "RUN")
    assert re.search(r"pip wheel .* \.$|pip wheel .* \. ", built + " ")


def test_the_health_check_needs_only_python() -> None:
    check = next(item for item in final_stage() if item.keyword == "HEALTHCHECK")
    assert check.argument.split("[")[0].split()[-1] == "CMD"  # exec form: no shell needed
    command = check.exec_form()
    assert command[0] == "python"
    assert "curl" not in check.argument
    assert "wget" not in check.argument


def test_the_build_context_holds_only_what_the_wheel_needs() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        included = True
        for rule in rules:
            negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            parts = path.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(fnmatch(prefix, pattern) for prefix in prefixes):
                included = negated
        return included

    for path in ("pyproject.toml", "README.md", "src/tokenward/deploy/cli.py"):
        assert sent(path), path
    for path in (".venv/bin/python", ".git/HEAD", "var/tokenward.db", "tests/conftest.py"):
        assert not sent(path), path
    assert not sent("src/tokenward/deploy/__pycache__/cli.cpython-311.pyc")


# --- compose.yaml ---------------------------------------------------------------------------
def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`, recursively."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3) or ""
        if variables.get(name):
            return variables[name]
        if operator == ":?":
            raise KeyError(f"{name}: {word}")
        return word

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    resolved: dict[str, Any] = interpolate(raw, {"TOKENWARD_MASTER_KEY": "k", **(variables or {})})
    return resolved


def tokenward_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run `tokenward` (the image's entry point, not overridden)."""
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("image") == "tokenward:latest" and "entrypoint" not in service
    }


def documented_settings() -> set[str]:
    """The table under "Every node needs the same settings" (other tables list tunables)."""
    text = (ROOT / "docs/deployment.md").read_text()
    table = text.split("Every node needs the same settings", 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"^\| `(TOKENWARD_\w+)` \|", table, flags=re.M))


def test_compose_needs_the_master_key_from_the_operator() -> None:
    with pytest.raises(KeyError, match="TOKENWARD_MASTER_KEY"):
        interpolate(yaml.safe_load((ROOT / "compose.yaml").read_text()), {})


def test_every_tokenward_service_has_the_documented_settings_with_the_same_values() -> None:
    spec = compose()
    assert documented_settings() == REQUIRED | OPTIONAL
    services = tokenward_services(spec)
    assert set(services) == {"init", "server1", "server2", "gateway"}
    values = None
    for name, service in services.items():
        env = {k: v for k, v in service["environment"].items() if k.startswith("TOKENWARD_")}
        assert REQUIRED <= set(env) <= REQUIRED | OPTIONAL, name
        assert values is None or env == values, name  # one deployment: the same everywhere
        values = env
    assert values is not None
    database, redis = (
        urlsplit(values["TOKENWARD_DATABASE_URL"]),
        urlsplit(values["TOKENWARD_REDIS_URL"]),
    )
    assert database.scheme == "postgresql+asyncpg"
    assert database.hostname == "postgres"
    assert redis.hostname == "redis"
    for name, service in spec["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in spec["services"], (name, dependency)


def test_one_issuer_the_gateways_public_url() -> None:
    spec = compose()
    issuer = spec["services"]["server1"]["environment"]["TOKENWARD_ISSUER"]
    for name in ("server1", "server2"):
        command = spec["services"][name]["command"]
        assert command[0] == "serve"
        assert "--issuer" not in command  # TOKENWARD_ISSUER, as docs/deployment.md says
    gateway = spec["services"]["gateway"]
    config = load_config(ROOT / "deploy/gateway.yaml")
    assert config.trust.issuer == issuer
    assert config.trust.mode == "local"
    assert config.trust.audiences == (issuer + "/api",)
    published = urlsplit(issuer).port
    assert f"{published}:{config.port}" in gateway["ports"]
    mount = gateway["volumes"][0].split(":")
    assert mount[0] == "./deploy/gateway.yaml"
    assert gateway["command"] == ["gateway", "--config", mount[1]]
    readyz = f"http://127.0.0.1:{config.metrics_port}/readyz"
    assert gateway["environment"]["HEALTHCHECK_URL"] == readyz
    balanced = next(route for route in config.routes if route.prefix == "/")
    assert {upstream.host for upstream in balanced.upstreams} == {"server1", "server2"}
    # The servers believe the gateway's X-Forwarded-For, and only the gateway's.
    trusted = spec["services"]["server1"]["environment"]["TOKENWARD_TRUSTED_PROXIES"]
    address = gateway["networks"]["default"]["ipv4_address"]
    assert trusted == f"{address}/32"
    subnet = spec["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode
    != 0,
    reason="no `docker compose` on this machine; the checks above stand in for its own",
)
def test_docker_compose_accepts_the_file() -> None:
    env = {**os.environ, "TOKENWARD_MASTER_KEY": generate_master_key()}
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, env=env, check=True)


# --- the topology as processes --------------------------------------------------------------
@dataclass
class Topology:
    gateway: str
    admin: str
    env: dict[str, str]
    workdir: Path


def _healthcheck(url: str) -> int:
    """The image's HEALTHCHECK command, run as the container would run it."""
    check = next(item for item in final_stage() if item.keyword == "HEALTHCHECK").exec_form()
    command = [sys.executable, *check[1:]]  # the image's python is this one's version
    env = {**os.environ, "HEALTHCHECK_URL": url}
    return subprocess.run(command, env=env, capture_output=True, check=False).returncode


def _until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while _healthcheck(url) != 0:
        assert process.poll() is None, f"{process.args!r} exited {process.returncode}"
        assert time.monotonic() < deadline, f"{url} never became healthy"
        time.sleep(0.1)  # bounded wait, as the engine's health check interval


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    require_postgres()
    redis = need_shared_redis()
    tmp = tmp_path_factory.mktemp("compose")
    spec = compose({"TOKENWARD_MASTER_KEY": generate_master_key()})
    services = spec["services"]
    schema = "tw_" + secrets.token_hex(6)
    ports = {name: free_port() for name in ("server1", "server2", "api", "gateway", "metrics")}
    compose_redis = services["init"]["environment"]["TOKENWARD_REDIS_URL"]
    assert compose_redis == "redis://redis:6379/0"

    def env_of(service: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
        env.update({k: str(v) for k, v in service.get("environment", {}).items()})
        env["TOKENWARD_DATABASE_URL"] = PG_URL
        env["TOKENWARD_DATABASE_SCHEMA"] = schema
        env["TOKENWARD_REDIS_URL"] = redis
        return env

    def argv(name: str) -> list[str]:
        command = [str(part) for part in services[name]["command"]]
        if name.startswith("server"):
            command[command.index("--host") + 1] = "127.0.0.1"
            command[command.index("--port") + 1] = str(ports[name])
        if name == "gateway":
            text = (ROOT / "deploy/gateway.yaml").read_text()
            for old, new in (
                ("0.0.0.0", "127.0.0.1"),  # noqa: S104 - compose's bind-all, made loopback
                ("port: 8080", f"port: {ports['gateway']}"),
                ("port: 9100", f"port: {ports['metrics']}"),
                ("http://server1:8000", f"http://127.0.0.1:{ports['server1']}"),
                ("http://server2:8000", f"http://127.0.0.1:{ports['server2']}"),
                ("http://api:8081", f"http://127.0.0.1:{ports['api']}"),
            ):
                assert old in text, old
                text = text.replace(old, new)
            (tmp / "gateway.yaml").write_text(text)
            command[command.index("--config") + 1] = str(tmp / "gateway.yaml")
        return [TOKENWARD, *command]  # ENTRYPOINT ["tokenward"]

    asyncio.run(_schema(schema, create=True))
    with ExitStack() as stack:
        stack.callback(lambda: asyncio.run(_schema(schema, create=False)))
        logs, workdir = tmp / "logs", tmp / "workdir"
        logs.mkdir()
        workdir.mkdir()

        def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
            log = stack.enter_context((logs / f"{name}.log").open("wb"))
            # cwd: the image's WORKDIR stands for it (`tokenward init` creates ./var there).
            process = subprocess.Popen(
                command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )

            def stop() -> None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

            stack.callback(stop)
            return process

        init = subprocess.run(
            argv("init"),
            check=False,
            env=env_of(services["init"]),
            cwd=workdir,
            capture_output=True,
            timeout=120,
        )
        assert init.returncode == 0, init.stderr.decode()
        for name in ("server1", "server2"):
            process = start(name, argv(name), env_of(services[name]))
            _until_healthy(f"http://127.0.0.1:{ports[name]}/healthz", process)
        api = services["api"]
        assert api["entrypoint"] == ["python", "-c"]
        script = api["command"][0].replace('"0.0.0.0", 8081', f'"127.0.0.1", {ports["api"]}')
        start("api", [sys.executable, "-c", script], env_of(api))
        gateway_env = env_of(services["gateway"])
        gateway = start("gateway", argv("gateway"), gateway_env)
        readyz = gateway_env["HEALTHCHECK_URL"].replace("9100", str(ports["metrics"]))
        _until_healthy(readyz, gateway)
        yield Topology(
            f"http://127.0.0.1:{ports['gateway']}",
            f"http://127.0.0.1:{ports['metrics']}",
            env_of(services["init"]),
            workdir,
        )


def test_the_compose_topology_issues_admits_and_revokes(topology: Topology) -> None:
    created = subprocess.run(
        [
            *(TOKENWARD, "client", "create", "--client-id", "svc"),
            *("--grant-type", "client_credentials", "--scope", "read"),
        ],
        env=topology.env,
        cwd=topology.workdir,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    client = ("svc", json.loads(created.stdout)["client_secret"])
    with httpx.Client(base_url=topology.gateway) as http:
        discovery = http.get("/.well-known/openid-configuration").json()
        assert discovery["issuer"] == "http://localhost:8080"
        issued = http.post("/token", data={"grant_type": "client_credentials"}, auth=client)
        assert issued.status_code == 200, issued.text
        bearer = issued.json()["access_token"]
        seen = http.get("/api/orders", headers={"authorization": f"Bearer {bearer}"})
        assert seen.status_code == 200, seen.text
        headers = {name.lower(): value for name, value in seen.json()["headers"].items()}
        assert headers["x-auth-subject"] == "svc"
        assert "authorization" not in headers  # the API never sees the token
        revoked = http.post("/revoke", data={"token": bearer}, auth=client)
        assert revoked.status_code == 200
    assert refused_within(f"{topology.gateway}/api/orders", bearer, 3.0) < 3.0
    ready = httpx.get(topology.admin + "/readyz").json()
    assert ready == {
        "status": "ready",
        "checks": {"serving": "ok", "revocations": "ok", "redis": "ok"},
    }
