"""A real nginx (Debian's package) for tests: started unprivileged (as `nobody` when the suite
runs as root), in the foreground with a temporary prefix, config, pid file and error log, on a
free loopback port, and stopped gracefully at the end. Without nginx the test skips, saying how
to install it; in CI it fails."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import pytest

from tests.conftest import IN_CI

MAIN = """
daemon off;
master_process on;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
{http}
}}
"""


def binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
        None,
    )
    if found is None:
        message = "nginx is not installed; on Debian: `apt-get install -y nginx`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


class Privileges(TypedDict, total=False):
    """Popen's keywords that switch the child to another user."""

    user: int
    group: int
    extra_groups: list[int]


def _drop_privileges(base: Path) -> Privileges:
    """As root, run nginx as nobody: no privileged master, no worker user switching."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    for path in [base, *base.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, base: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = base / "error.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"nginx exited with {process.returncode}: {text[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # waiting for a process to bind, not for time to pass in a test
    pytest.fail("nginx did not start listening within 15 s")


@contextmanager
def running_nginx(base: Path, http: str, port: int) -> Iterator[int]:
    """nginx with `http` inside its `http {}` block, in `base`, until it listens on `port`;
    yields its pid."""
    nginx = binary()
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    (base / "nginx.conf").write_text(MAIN.format(base=base, http=http))
    command = [
        nginx,
        "-p",
        str(base),
        "-c",
        str(base / "nginx.conf"),
        "-e",
        str(base / "error.log"),
    ]
    with (base / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            **_drop_privileges(base),
        )
    try:
        _wait_until_listening(process, port, base)
        yield process.pid
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: workers finish, master exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
