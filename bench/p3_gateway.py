"""P3: the gateway under load on loopback, against itself with auth off and against nginx.

Four contenders, each a separate process on 127.0.0.1, all in front of one fast upstream (an
nginx worker answering `200 ok` from memory, so the upstream never bounds the figures):

- `direct`: the upstream itself (the baseline for "latency added");
- `nginx`: Debian's nginx, `proxy_pass` with upstream keep-alive, one worker;
- `off`: the gateway, one process, route with `auth: none`, no rate limit, no audit;
- `full`: the same gateway with the full policy: bearer token (validator cache hit, revocation
  check), scope check, rate limit (GCRA, per token) and one audit JSON line per request.

The load generator is wrk (one thread, 32 connections, bounded by time), run in interleaved
rounds, every other round in reverse order, so drift hits every contender alike; each figure
is the median of per-round ratios.
P3a = full ÷ off (goal ≥ 0.90); P3b = full ÷ nginx (goal ≥ 0.3).

P3P = `cedar` ÷ `full`: the full gateway with a typical three-policy Cedar set on the route
(docs/policies.md) against the same gateway without policies (goal ≥ 0.90). The set reads the
address, scopes and hour, so decisions are cached per token and hour; `cedar_live` swaps one
policy for one that reads `auth_age`, which turns the decision cache off (every request is
evaluated by Cedar), and is reported beside it.

P3T = `traffic` ÷ `off`: the `off` route with `traffic:` (passive health checks, a circuit
breaker and a connection limit on its upstream: docs/gateway.md, Traffic management), the
price of those mechanisms on every request when they are configured (goal ≥ 0.90).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import fixtures
from bench.harness import Figure

ROUNDS = int(os.environ.get("P3_ROUNDS", "5"))
SECONDS = int(os.environ.get("P3_SECONDS", "3"))
CONNECTIONS = 32
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    rps: float
    p50: float  # seconds
    p99: float
    cpu: float = 0.0  # CPU seconds the server under test spent per request (user + system)
    requests: int = 0  # how many wrk completed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _nginx_conf(tmp: Path, name: str, server: str) -> Path:
    (tmp / name).mkdir()
    conf = tmp / name / "nginx.conf"
    temp = " ".join(
        f"{kind}_temp_path {tmp / name / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"worker_processes 1;\nerror_log {tmp / name / 'error.log'} warn;\n"
        f"pid {tmp / name / 'nginx.pid'};\nevents {{ worker_connections 1024; }}\n"
        f"http {{ access_log off; {temp}\n{server}\n}}\n"
    )
    return conf


def _upstream_server(port: int) -> str:
    return (
        f"server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000; "
        f'location / {{ default_type text/plain; return 200 "ok\\n"; }} }}'
    )


def _proxy_server(port: int, upstream: int) -> str:
    return (
        f"upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n"
        f"server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000; "
        f"location / {{ proxy_pass http://backend; "
        f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }}'
    )


GATEWAY_CONFIG = """\
listen: {{port: {port}}}
trust: {{issuer: {issuer}, audience: {audience}, jwks_file: {jwks}}}
audit: {audit}
rate_limits:
  bench: {{requests: 1000000000, per: 3600, key: token}}
routes:
  - name: api
    prefix: /
    upstreams: [http://127.0.0.1:{upstream}]
    auth: {auth}
    {policy}
"""


# A typical set: readers with the scope, from the office networks, no writes at night.
CEDAR = """\
@id("readers")
permit (principal, action in Action::"read", resource)
when { context.scopes.contains("read") };

@id("office-network")
forbid (principal, action, resource)
unless { context.ip.isInRange(ip("127.0.0.0/8")) || context.ip.isInRange(ip("10.0.0.0/8")) };

"""
CEDAR_CACHED = (
    CEDAR
    + """\
@id("no-night-writes")
forbid (principal, action in Action::"write", resource)
when { context.hour < 6 };
"""
)
# The same with a policy on the time since sign-in: nothing can be cached.
CEDAR_LIVE = (
    CEDAR
    + """\
@id("fresh-writes")
forbid (principal, action in Action::"write", resource)
when { context.auth_age > 3600 };
"""
)


# `traffic` contender: `off` plus every per-request traffic mechanism on its one upstream
# (passive health, breaker, connection limit), to price them when configured.
TRAFFIC = """
    traffic:
      health: {passive: {failures: 3, cooloff: 10}}
      breaker: {failures: 5, cooloff: 30}
      limits: {max_connections: 1000, max_pending: 100}"""


def _gateway_config(
    tmp: Path,
    name: str,
    port: int,
    upstream: int,
    full: bool,
    cedar: str | None = None,
    traffic: str = "",
) -> Path:
    path = tmp / f"{name}.yaml"
    policy = "scopes: [read]\n    rate_limit: bench" if full else "rate_limit: off"
    policy += traffic
    if cedar is not None:
        (tmp / f"{name}.cedar").write_text(cedar)
        policy += f"\n    policies:\n      files: [{tmp / f'{name}.cedar'}]"
    path.write_text(
        GATEWAY_CONFIG.format(
            port=port,
            jwks=tmp / "jwks.json",
            upstream=upstream,
            issuer=fixtures.ISSUER,
            audience=fixtures.AUDIENCE,
            auth="bearer" if full else "none",
            audit=f"{{path: {tmp / 'audit.jsonl'}}}" if full else "{enabled: false}",
            policy=policy,
        )
    )
    return path


@contextlib.contextmanager
def _process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a P3 server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # bounded wait for the server to start
    raise RuntimeError(f"nothing listens on port {port}")


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


_TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The process and its children (nginx: the master and its worker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _wrk(
    url: str, token: str | None, seconds: int, pid: int | None = None, extra: Sequence[int] = ()
) -> Sample:
    """Throughput and latency from wrk; with `pid`, the CPU that server used per request
    (robust to other load on the machine, unlike throughput), with `extra` servers' too."""
    pids = [*_tree(pid), *(p for other in extra for p in _tree(other))] if pid is not None else []
    before = _cpu_seconds(pids)
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if token:
        args[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    if "Non-2xx or 3xx responses" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk saw errors against {url}:\n{text}")

    def percentile(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", text)
        assert match is not None, text
        return float(match.group(1)) * _UNITS[match.group(2)]

    count = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    cpu = (_cpu_seconds(pids) - before) / count if pids else 0.0
    return Sample(rps, percentile("50"), percentile("99"), cpu, count)


def _stack() -> str:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn+{http}+{loop}"


def run() -> list[Figure]:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(f"  P3 skipped: {' and '.join(missing)} missing (apt-get install -y wrk nginx)")
        return []
    ring = fixtures.keyring("ES256")
    token = fixtures.mint_many(ring, 1)[0]
    with tempfile.TemporaryDirectory(prefix="tw-p3-") as name:
        tmp = Path(name)
        jwks = tmp / "jwks.json"
        jwks.write_text(json.dumps(ring.jwks()))
        samples = _measure(tmp, token)
    return _figures(samples)


def _measure(tmp: Path, token: str) -> dict[str, list[Sample]]:
    up, px, full, off, cedar, live, paced = (_free_port() for _ in range(7))
    up_conf = _nginx_conf(tmp, "up", _upstream_server(up))
    px_conf = _nginx_conf(tmp, "px", _proxy_server(px, up))
    nginx = ["nginx", "-g", "daemon off;", "-c"]
    # The real entry point (`tokenward gateway --config`), trusting a JWKS file.
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    serve = [sys.executable, "-c", code]
    with (
        _process([*nginx, str(up_conf), "-p", str(tmp / "up")], up) as upstream,
        _process([*nginx, str(px_conf), "-p", str(tmp / "px")], px) as proxy,
        _process([*serve, str(_gateway_config(tmp, "full", full, up, True))], full) as gw_full,
        _process([*serve, str(_gateway_config(tmp, "off", off, up, False))], off) as gw_off,
        _process(
            [*serve, str(_gateway_config(tmp, "cedar", cedar, up, True, CEDAR_CACHED))], cedar
        ) as gw_cedar,
        _process(
            [*serve, str(_gateway_config(tmp, "cedar_live", live, up, True, CEDAR_LIVE))], live
        ) as gw_live,
        _process(
            [*serve, str(_gateway_config(tmp, "traffic", paced, up, False, traffic=TRAFFIC))],
            paced,
        ) as gw_traffic,
    ):
        targets = {
            "direct": (f"http://127.0.0.1:{up}/", None, upstream.pid),
            "nginx": (f"http://127.0.0.1:{px}/", None, proxy.pid),
            "off": (f"http://127.0.0.1:{off}/", None, gw_off.pid),
            "full": (f"http://127.0.0.1:{full}/", token, gw_full.pid),
            "cedar": (f"http://127.0.0.1:{cedar}/", token, gw_cedar.pid),
            "cedar_live": (f"http://127.0.0.1:{live}/", token, gw_live.pid),
            "traffic": (f"http://127.0.0.1:{paced}/", None, gw_traffic.pid),
        }
        for url, credential, _pid in targets.values():
            _wrk(url, credential, 1)  # warm-up: connections, caches, the token's validation
        samples: dict[str, list[Sample]] = {name: [] for name in targets}
        for round_ in range(ROUNDS):
            # Odd rounds run the contenders in reverse, so whatever drifts within a round
            # (another process waking, the CPU's clock) favours no contender over its pair.
            order = list(targets.items())
            for name, (url, credential, pid) in order if round_ % 2 == 0 else order[::-1]:
                sample = _wrk(url, credential, SECONDS, pid)
                samples[name].append(sample)
                print(
                    f"  round {round_ + 1} {name:>10}: {sample.rps:8.0f} req/s, "
                    f"p50 {sample.p50 * 1e3:.2f} ms, p99 {sample.p99 * 1e3:.2f} ms, "
                    f"CPU {sample.cpu * 1e6:.0f} µs/request"
                )
    return samples


def _median_ratio(a: list[Sample], b: list[Sample]) -> float:
    return statistics.median(x.rps / y.rps for x, y in zip(a, b, strict=True))


def _added(samples: dict[str, list[Sample]], name: str) -> str:
    p50 = statistics.median(s.p50 for s in samples[name]) - statistics.median(
        s.p50 for s in samples["direct"]
    )
    p99 = statistics.median(s.p99 for s in samples[name]) - statistics.median(
        s.p99 for s in samples["direct"]
    )
    return f"{name} adds p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"


def _cpu(samples: dict[str, list[Sample]], name: str) -> str:
    return f"{statistics.median(s.cpu for s in samples[name]) * 1e6:.0f} µs"


def _cpu_ratio(samples: dict[str, list[Sample]], numerator: str, denominator: str) -> float:
    """CPU per request, a ratio that other load on the machine disturbs less than req/s."""
    return statistics.median(s.cpu for s in samples[numerator]) / statistics.median(
        s.cpu for s in samples[denominator]
    )


def _figures(samples: dict[str, list[Sample]]) -> list[Figure]:
    rps = {name: statistics.median(s.rps for s in runs) for name, runs in samples.items()}
    stack = _stack()
    return [
        Figure(
            "P3a",
            _median_ratio(samples["full"], samples["off"]),
            "gateway full policy ÷ auth off",
            [
                f"{rps['full']:.0f} vs {rps['off']:.0f} req/s",
                f"CPU per request {_cpu(samples, 'full')} vs {_cpu(samples, 'off')}",
                "goal ≥ 0.90",
                stack,
            ],
        ),
        Figure(
            "P3b",
            _median_ratio(samples["full"], samples["nginx"]),
            "gateway full policy ÷ nginx proxy_pass",
            [
                f"{rps['full']:.0f} vs {rps['nginx']:.0f} req/s",
                f"CPU per request {_cpu(samples, 'full')} vs {_cpu(samples, 'nginx')}",
                _added(samples, "full"),
                _added(samples, "nginx"),
                "goal ≥ 0.3",
            ],
        ),
        Figure(
            "P3P",
            _median_ratio(samples["cedar"], samples["full"]),
            "gateway full policy + three Cedar policies ÷ full policy without Cedar",
            [
                f"{rps['cedar']:.0f} vs {rps['full']:.0f} req/s",
                f"CPU per request {_cpu(samples, 'cedar')} vs {_cpu(samples, 'full')} "
                f"(ratio {_cpu_ratio(samples, 'full', 'cedar'):.2f})",
                f"decision cache off (auth_age read): "
                f"{_median_ratio(samples['cedar_live'], samples['full']):.2f}, "
                f"{rps['cedar_live']:.0f} req/s, CPU {_cpu(samples, 'cedar_live')}",
                "goal ≥ 0.90",
            ],
        ),
        Figure(
            "P3T",
            _median_ratio(samples["traffic"], samples["off"]),
            "gateway auth off + traffic: (passive health, breaker, limits) ÷ auth off",
            [
                f"{rps['traffic']:.0f} vs {rps['off']:.0f} req/s",
                f"CPU per request {_cpu(samples, 'traffic')} vs {_cpu(samples, 'off')}",
                "goal ≥ 0.90",
            ],
        ),
    ]
