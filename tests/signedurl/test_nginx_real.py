"""nginx `secure_link` links, checked by a real nginx (Debian's package).

The test starts nginx itself, unprivileged (as `nobody` when the suite runs as root), in the
foreground with a temporary prefix, config, pid file and error log, on a free loopback port,
and stops it at the end. Without nginx it skips, saying how to install it; in CI it fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import httpx
import pytest

from tests.conftest import IN_CI, FrozenClock
from tokenward.signedurl.formats import NginxSecureLink

SECRET = "tokenward-nginx-test-secret"
CUSTOM = "$secret:$uri:$secure_link_expires"  # our form of the /custom/ expression below
CONFIG = """
daemon off;
master_process on;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {base}/www;
        location /media/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri$remote_addr {secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
        }}
        location /custom/ {{
            secure_link $arg_st,$arg_e;
            secure_link_md5 "{secret}:$uri:$secure_link_expires";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    origin: str
    pid: int


def _binary() -> str:
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, base: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (
                (base / "error.log").read_text(errors="replace")
                if (base / "error.log").exists()
                else ""
            )
            pytest.fail(f"nginx exited with {process.returncode}: {log[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # waiting for a process to bind, not for time to pass in a test
    pytest.fail("nginx did not start listening within 15 s")


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


@pytest.fixture(scope="module")
def nginx() -> Iterator[Nginx]:
    binary = _binary()
    base = Path(tempfile.mkdtemp(prefix="tokenward-nginx-"))
    try:
        (base / "tmp").mkdir()
        for folder in ("media", "custom"):
            (base / "www" / folder).mkdir(parents=True)
            (base / "www" / folder / "hello.txt").write_text(f"hello from {folder}\n")
        (base / "www" / "media" / "café.txt").write_text("bonjour\n")
        port = _free_port()
        (base / "nginx.conf").write_text(CONFIG.format(base=base, port=port, secret=SECRET))
        command = [
            binary,
            "-p",
            str(base),
            "-c",
            str(base / "nginx.conf"),
            "-e",
            str(base / "error.log"),
        ]
        with (base / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, **_drop_privileges(base)
            )
        try:
            _wait_until_listening(process, port, base)
            yield Nginx(f"http://127.0.0.1:{port}", process.pid)
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful: workers finish, master exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.get(url)


def _signer(clock: FrozenClock | None = None) -> NginxSecureLink:
    return NginxSecureLink(SECRET, clock=clock or time.time)


def test_a_link_tokenward_signed_is_served(nginx: Nginx) -> None:
    url = _signer().sign_url(f"{nginx.origin}/media/hello.txt", ttl=60, remote_addr="127.0.0.1")
    response = _get(url)
    assert response.status_code == 200
    assert response.text == "hello from media\n"


def test_a_non_ascii_path_hashes_like_nginx_uri(nginx: Nginx) -> None:
    url = _signer().sign_url(f"{nginx.origin}/media/café.txt", ttl=60, remote_addr="127.0.0.1")
    assert "/media/caf%C3%A9.txt?" in url
    response = _get(url)
    assert response.status_code == 200
    assert response.text == "bonjour\n"


def test_tampered_links_are_refused(nginx: Nginx) -> None:
    good = _signer().sign_url(f"{nginx.origin}/media/hello.txt", ttl=60, remote_addr="127.0.0.1")
    md5 = good.split("md5=")[1].split("&")[0]
    flipped = md5[:5] + ("A" if md5[5] != "A" else "B") + md5[6:]
    expires = int(good.rsplit("expires=", 1)[1])
    for tampered in (
        good.replace(f"md5={md5}", f"md5={flipped}"),
        good.replace(f"expires={expires}", f"expires={expires + 3600}"),  # extending the link
        good.replace("/media/hello.txt", "/media/café.txt"),
        good.split("?")[0],  # no signature at all
    ):
        assert _get(tampered).status_code == 403, tampered


def test_a_link_for_another_address_is_refused(nginx: Nginx) -> None:
    url = _signer().sign_url(f"{nginx.origin}/media/hello.txt", ttl=60, remote_addr="10.0.0.1")
    assert _get(url).status_code == 403


def test_an_expired_link_is_gone(nginx: Nginx) -> None:
    past = FrozenClock(time.time() - 3600)
    url = _signer(past).sign_url(f"{nginx.origin}/media/hello.txt", ttl=60, remote_addr="127.0.0.1")
    assert _get(url).status_code == 410


def test_a_configured_expression_and_parameter_names(nginx: Nginx) -> None:
    signer = NginxSecureLink(SECRET, expression=CUSTOM, hash_param="st", expires_param="e")
    url = signer.sign_url(f"{nginx.origin}/custom/hello.txt", ttl=60)
    response = _get(url)
    assert response.status_code == 200
    assert response.text == "hello from custom\n"
    assert _get(url.replace("/custom/hello.txt", "/custom/other.txt")).status_code == 403


def test_nginx_runs_unprivileged(nginx: Nginx) -> None:
    status = Path(f"/proc/{nginx.pid}/status").read_text()
    real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert real_uid != 0
