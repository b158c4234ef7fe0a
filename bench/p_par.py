"""PAR: pushed authorization code flows per second (POST /par, GET /authorize with the
request_uri, POST /token) beside the plain code flow (GET /authorize with the parameters, POST
/token), on the same server process in the same run, interleaved rounds, medians.

One uvicorn process (uvloop + httptools) serves; one synchronous client drives whole flows one
after the other with a signed-in session (the client skips consent), so a flow's rate is the
inverse of its latency, and the server's CPU per flow (read from /proc) is what the push costs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench.contenders import _free_port, _stop, _wait_http
from bench.harness import Figure

ROUNDS = 7
FLOWS = 80  # per round and contender (CPU is read in 10 ms ticks)
VERIFIER = "bench-and-test-pkce-verifier-" + "v" * 20
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
_HIDDEN = re.compile(r'name="interaction" value="([^"]+)"')
_TICKS = 100.0  # USER_HZ: /proc/<pid>/stat counts CPU in clock ticks of 1/100 s on Linux


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _code(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


@contextmanager
def server(mode: str) -> Iterator[tuple[str, dict[str, str]]]:
    """bench/serve_as.py in `mode` on a free port: its base URL and the JSON line it printed."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_as", "--port", str(port), "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        if process.stdout is None:
            raise RuntimeError("no pipe to bench.serve_as")
        info = json.loads(process.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/healthz", process)  # type: ignore[arg-type]
        yield base, info
    finally:
        _stop(process)  # type: ignore[arg-type]
        if process.stdout is not None:
            process.stdout.close()


class Flows:
    def __init__(self, base: str, info: dict[str, str]) -> None:
        self.base = base
        self.info = info
        self.http = httpx.Client(base_url=base)
        self.auth = (info["client_id"], info["secret"])
        self.request = {
            "response_type": "code",
            "client_id": info["client_id"],
            "redirect_uri": info["redirect_uri"],
            "scope": "read",
            "state": "bench-state",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        }

    def sign_in(self) -> None:
        page = self.http.get("/authorize?" + urlencode(self.request))
        match = _HIDDEN.search(page.text)
        if match is None:
            raise RuntimeError(f"no sign-in form: {page.status_code} {page.text[:200]}")
        done = self.http.post(
            "/login",
            data={
                "interaction": match.group(1),
                "username": self.info["username"],
                "password": self.info["password"],
            },
        )
        self._redeem(done)

    def _redeem(self, redirect: httpx.Response) -> None:
        if redirect.status_code != 302:
            raise RuntimeError(f"no code: {redirect.status_code} {redirect.text[:200]}")
        token = self.http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": _code(redirect.headers["location"]),
                "redirect_uri": self.info["redirect_uri"],
                "code_verifier": VERIFIER,
            },
            auth=self.auth,
        )
        if token.status_code != 200:
            raise RuntimeError(f"token refused: {token.text[:200]}")

    def plain(self) -> int:
        for _ in range(FLOWS):
            self._redeem(self.http.get("/authorize?" + urlencode(self.request)))
        return FLOWS

    def pushed(self) -> int:
        for _ in range(FLOWS):
            pushed = self.http.post("/par", data=self.request, auth=self.auth)
            if pushed.status_code != 201:
                raise RuntimeError(f"push refused: {pushed.text[:200]}")
            link = {
                "client_id": self.info["client_id"],
                "request_uri": pushed.json()["request_uri"],
            }
            self._redeem(self.http.get("/authorize?" + urlencode(link)))
        return FLOWS


def run() -> list[Figure]:
    with server("as-flows") as (base, info):
        pid = _server_pid(base)
        flows = Flows(base, info)
        flows.sign_in()
        flows.plain()  # warm both paths up
        flows.pushed()
        seconds: dict[str, list[float]] = {"plain": [], "pushed": []}
        cpu: dict[str, list[float]] = {"plain": [], "pushed": []}
        for _ in range(ROUNDS):
            for name, contender in (("plain", flows.plain), ("pushed", flows.pushed)):
                cpu_before, start = _cpu_seconds(pid), time.perf_counter()
                count = contender()
                seconds[name].append((time.perf_counter() - start) / count)
                cpu[name].append((_cpu_seconds(pid) - cpu_before) / count)
    rate = {name: 1.0 / statistics.median(values) for name, values in seconds.items()}
    cpu_ms = {name: statistics.median(values) * 1e3 for name, values in cpu.items()}
    ratio = statistics.median(
        p / q for p, q in zip(seconds["plain"], seconds["pushed"], strict=True)
    )
    print(
        f"  PAR: pushed flow {rate['pushed']:,.0f}/s ({cpu_ms['pushed']:.2f} ms server CPU), "
        f"plain code flow {rate['plain']:,.0f}/s ({cpu_ms['plain']:.2f} ms server CPU)"
    )
    return [
        Figure(
            "PAR",
            rate["pushed"],
            "PAR + authorize + token flows/s, one client in sequence, 1 server process",
            [
                f"{ratio:.2f}× the plain code flow's {rate['plain']:,.0f}/s",
                f"server CPU per flow {cpu_ms['pushed']:.2f} ms vs {cpu_ms['plain']:.2f} ms",
            ],
        )
    ]


def _server_pid(base: str) -> int:
    """The uvicorn process listening on `base`'s port (the bench's own child)."""
    port = urlsplit(base).port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench.serve_as" in cmdline and str(port).encode() in cmdline:
            return int(proc.name)
    raise RuntimeError(f"no bench server process on port {port}")
