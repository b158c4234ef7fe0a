"""A gateway that cannot start says why in one line on stderr, naming the setting and the fix,
and exits with status 2: no traceback, no uvicorn log lines. One that starts says where it
listens. Real `tokenward gateway` processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.e2e.live import free_port
from tests.gateway.processes import cli, gateway_process, refused
from tokenward.config import Settings
from tokenward.deploy.wiring import open_stores
from tokenward.tokens.keyring import KeyPolicy, Keyring
from tokenward.tokens.sealing import generate_master_key

ISSUER = "http://127.0.0.1:9"  # nothing listens on the discard port
OPEN_ROUTE = (
    "routes:\n  - {name: open, prefix: /open, upstreams: ['http://127.0.0.1:9'], auth: none}\n"
)
BEARER_ROUTE = (
    "routes:\n  - {name: api, prefix: /api, upstreams: ['http://127.0.0.1:9'], auth: bearer}\n"
)


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}


@pytest.fixture
def busy() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def _one_line(status: int, stderr: str, *needles: str) -> str:
    lines = stderr.splitlines()
    assert status == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tokenward gateway: "), stderr
    for needle in needles:
        assert needle in lines[0], stderr
    return lines[0]


def test_busy_main_port(tmp_path: Path, env: Mapping[str, str], busy: int) -> None:
    config = _write(tmp_path, f"listen: {{port: {busy}}}\n" + OPEN_ROUTE)
    line = _one_line(*refused(config, env), "listen.port", f"127.0.0.1:{busy}", "in use")
    assert line.startswith(f"tokenward gateway: {config}: listen.port: ")


def test_busy_metrics_port(tmp_path: Path, env: Mapping[str, str], busy: int) -> None:
    config = _write(tmp_path, f"listen: {{port: 0}}\nmetrics: {{port: {busy}}}\n" + OPEN_ROUTE)
    _one_line(*refused(config, env), "metrics.port", "in use", "choose another metrics.port")


def test_unresolvable_listen_host(tmp_path: Path, env: Mapping[str, str]) -> None:
    config = _write(tmp_path, "listen: {host: no-such-host.invalid, port: 0}\n" + OPEN_ROUTE)
    _one_line(*refused(config, env), "listen.host", "no-such-host.invalid")


def test_unreadable_tls_certificate(tmp_path: Path, env: Mapping[str, str]) -> None:
    missing = tmp_path / "missing.pem"
    config = _write(
        tmp_path, f"listen: {{port: 0}}\ntls: {{cert: {missing}, key: {missing}}}\n" + OPEN_ROUTE
    )
    _one_line(*refused(config, env), "tls.cert", str(missing), "No such file")


def test_invalid_tls_pair(tmp_path: Path, env: Mapping[str, str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    config = _write(
        tmp_path, f"listen: {{port: 0}}\ntls: {{cert: {junk}, key: {junk}}}\n" + OPEN_ROUTE
    )
    _one_line(*refused(config, env), "tls.cert/tls.key", "PEM")


def test_unreachable_issuer_in_remote_mode(tmp_path: Path, env: Mapping[str, str]) -> None:
    config = _write(
        tmp_path,
        f"listen: {{port: 0}}\ntrust: {{issuer: '{ISSUER}', audience: aud}}\n" + BEARER_ROUTE,
    )
    _one_line(*refused(config, env), "trust.issuer", "cannot reach", "start the authorization")


def test_unreachable_revocation_database(tmp_path: Path, env: Mapping[str, str]) -> None:
    """Remote mode with `revocations:`: the feed's first read happens in the lifespan."""
    jwks = tmp_path / "jwks.json"
    ring = Keyring(KeyPolicy(), lambda: 0.0)
    ring.ensure_ready()
    jwks.write_text(json.dumps(ring.jwks()))
    config = _write(
        tmp_path,
        f"listen: {{port: 0}}\n"
        f"trust: {{issuer: '{ISSUER}', audience: aud, jwks_file: {jwks}}}\n"
        "revocations: {database_url: 'postgresql+asyncpg://nobody:secret@127.0.0.1:9/x'}\n"
        + BEARER_ROUTE,
    )
    line = _one_line(*refused(config, env), "revocations.database_url", "revocation log")
    assert "secret" not in line  # never the URL: it may carry a password


def _local(tmp_path: Path) -> Path:
    return _write(
        tmp_path,
        f"listen: {{port: 0}}\ntrust: {{issuer: '{ISSUER}', audience: aud, mode: local}}\n"
        + BEARER_ROUTE,
    )


def test_local_mode_without_a_master_key(tmp_path: Path, env: dict[str, str]) -> None:
    data_dir = tmp_path / "data"
    cli(data_dir, env, "init")
    (data_dir / "master.key").unlink()  # kept elsewhere, and not given to the gateway
    env |= {"TOKENWARD_ISSUER": ISSUER}
    _one_line(
        *refused(_local(tmp_path), env, global_args=("--data-dir", str(data_dir))),
        "TOKENWARD_MASTER_KEY",
        "no master key",
    )


def test_local_mode_on_a_data_directory_without_a_database(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A wrong data directory must not become a new deployment beside the servers' one."""
    empty = tmp_path / "empty"
    env |= {"TOKENWARD_ISSUER": ISSUER, "TOKENWARD_MASTER_KEY": generate_master_key()}
    status, stderr = refused(_local(tmp_path), env, global_args=("--data-dir", str(empty)))
    _one_line(status, stderr, "TOKENWARD_DATA_DIR", "no tokenward database", "--data-dir")
    assert not empty.exists()


def test_local_mode_on_a_database_without_keys(tmp_path: Path, env: dict[str, str]) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), data_dir=data_dir)
    asyncio.run(_migrated_only(settings))
    env |= {"TOKENWARD_ISSUER": ISSUER, "TOKENWARD_MASTER_KEY": settings.resolved_master_key()}
    status, stderr = refused(_local(tmp_path), env, global_args=("--data-dir", str(data_dir)))
    _one_line(status, stderr, "TOKENWARD_DATABASE_URL", "no signing keys")
    assert asyncio.run(_key_count(settings)) == 0  # the gateway created none


async def _migrated_only(settings: Settings) -> None:
    await (await open_stores(settings)).aclose()


async def _key_count(settings: Settings) -> int:
    stores = await open_stores(settings)
    try:
        return len(await stores.keys.load_all())
    finally:
        await stores.aclose()


def test_local_mode_with_the_wrong_master_key(tmp_path: Path, env: dict[str, str]) -> None:
    data_dir = tmp_path / "data"
    cli(data_dir, env, "init")  # keys sealed under the key in data/master.key
    env |= {"TOKENWARD_ISSUER": ISSUER, "TOKENWARD_MASTER_KEY": generate_master_key()}
    _one_line(
        *refused(_local(tmp_path), env, global_args=("--data-dir", str(data_dir))),
        "TOKENWARD_MASTER_KEY",
        "the servers' master key",
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1/x",  # not a driver tokenward has
        "postgresql+asyncpg://nobody:secret@127.0.0.1:9/x",  # nothing listens there
    ],
)
def test_local_mode_with_an_unusable_database(
    tmp_path: Path, env: dict[str, str], url: str
) -> None:
    env |= {
        "TOKENWARD_ISSUER": ISSUER,
        "TOKENWARD_MASTER_KEY": generate_master_key(),
        "TOKENWARD_DATABASE_URL": url,
    }
    line = _one_line(*refused(_local(tmp_path), env), "TOKENWARD_DATABASE_URL", "postgresql+")
    assert "secret" not in line


def test_local_mode_with_an_invalid_setting(tmp_path: Path, env: dict[str, str]) -> None:
    env |= {"TOKENWARD_ISSUER": ISSUER, "TOKENWARD_REVOCATION_RESYNC_SECONDS": "often"}
    _one_line(*refused(_local(tmp_path), env), "TOKENWARD_REVOCATION_RESYNC_SECONDS")


def test_local_mode_with_another_issuer(tmp_path: Path, env: dict[str, str]) -> None:
    env |= {"TOKENWARD_ISSUER": "https://elsewhere.example"}
    _one_line(*refused(_local(tmp_path), env), "trust.issuer", "TOKENWARD_ISSUER")


def test_the_gateway_says_where_it_listens(tmp_path: Path, env: Mapping[str, str]) -> None:
    port = free_port()
    config = _write(tmp_path, f"listen: {{port: {port}}}\nmetrics: {{port: 0}}\n" + OPEN_ROUTE)
    with gateway_process(config, env) as gateway:
        assert gateway.base == f"http://127.0.0.1:{port}"
        assert gateway.admin is not None
        assert httpx.get(gateway.admin + "/metrics").status_code == 200
        assert httpx.get(gateway.admin + "/healthz").json() == {"status": "ok"}
        assert httpx.get(gateway.base + "/healthz").json()["error"] == "no_route"


def test_an_unreachable_redis_does_not_stop_the_start(
    tmp_path: Path, env: Mapping[str, str]
) -> None:
    """Redis is not needed to start (revocations also arrive by re-reading the log; decisions
    that need Redis fail closed per request): readiness reports it, as degraded."""
    data_dir = tmp_path / "data"
    cli(data_dir, env, "init")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    config = _write(
        tmp_path,
        "listen: {port: 0}\nmetrics: {port: 0}\n"
        f"trust: {{issuer: '{ISSUER}', audience: aud, jwks_file: {jwks}}}\n"
        f"revocations: {{database_url: 'sqlite+aiosqlite:///{data_dir}/tokenward.db', "
        "redis_url: 'redis://127.0.0.1:9/0'}\n" + BEARER_ROUTE,
    )
    with gateway_process(config, env) as gateway:
        assert gateway.admin is not None
        ready = httpx.get(gateway.admin + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "degraded",
            "checks": {"serving": "ok", "revocations": "ok", "redis": "unreachable"},
        }


def test_sigterm_runs_the_lifespan_shutdown(tmp_path: Path, env: Mapping[str, str]) -> None:
    """uvicorn re-raises a caught SIGTERM once it has shut down; the gateway's own shutdown
    (background stop, audit flush, stores closed) must have run by then. The audit line of a
    request made just before is only flushed by it (the periodic flush is 0.5 s away)."""
    audit = tmp_path / "audit.jsonl"
    config = _write(tmp_path, f"listen: {{port: 0}}\naudit: {{path: {audit}}}\n" + OPEN_ROUTE)
    with gateway_process(config, env) as gateway:
        assert httpx.get(gateway.base + "/nowhere").status_code == 404
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(20) in (0, -signal.SIGTERM)
    assert json.loads(audit.read_text())["reason"] == "no_route"
    assert gateway.stderr.read_text().count("\n") == 1  # the listening line, nothing else
