"""`make run` (`tokenward demo`): the printed logins and the printed command work as pasted, on the
first start and on every later one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.cluster import wait_healthy
from tests.e2e.live import free_port, stop_process

TOKENWARD = str(Path(sys.executable).parent / "tokenward")


@contextmanager
def demo(data_dir: Path, port: int) -> Iterator[str]:
    """A running demo; yields what it printed before serving."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    process = subprocess.Popen(
        [TOKENWARD, "--data-dir", str(data_dir), "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    with process:
        try:
            yield _serving(process, port)
        finally:
            stop_process(process)


def _serving(process: subprocess.Popen[str], port: int) -> str:
    """What the demo printed up to `listening on`, once it answers."""
    assert process.stdout is not None
    printed = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.startswith("listening on"):
            break
        printed.append(line)
    wait_healthy(f"http://127.0.0.1:{port}", process)  # type: ignore[arg-type]
    return "".join(printed)


def check_printed_logins(banner: str, base: str) -> None:
    [command] = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl")]
    called = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30, check=True
    )
    assert '"hello":"demo-client"' in called.stdout, (command, called.stdout, called.stderr)
    admin = re.search(r"sign in as (\S+) / (\S+)", banner)
    assert admin is not None, banner
    with httpx.Client(base_url=base) as browser:
        form = browser.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed_in = browser.post(
            "/admin/login",
            data={"csrf": csrf.group(1), "username": admin.group(1), "password": admin.group(2)},
            headers={"origin": base},
        )
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == "/admin/dashboard"
    assert "demo / demo-password" in banner
    assert f"login --issuer {base} --client-id demo-cli" in banner


def test_the_demo_prints_logins_and_a_call_that_work_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with demo(tmp_path, port) as first:
        check_printed_logins(first, base)
    with demo(tmp_path, port) as second:  # a restart prints new credentials that work too
        check_printed_logins(second, base)
        assert "<secret" not in second
