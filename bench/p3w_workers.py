"""P3W: the gateway with `workers: 2` ÷ nginx with 2 worker processes, on this 2-core machine.

P3b's setting with both sides given both cores: the same upstream (one nginx worker answering
`200 ok` from memory), nginx `proxy_pass` with upstream keep-alive and `worker_processes 2`,
and `tokenward gateway` with the full policy (bearer token, scope, rate limit, audit line per
request) and `workers: 2`, whose rate limits are then in Redis (127.0.0.1:6379, as more than
one worker requires; each worker leases part of the quota, store/rate_leases.py, so the busy
bench token costs a round trip per ~50 ms per worker, not per request). One worker of the
same gateway (limits in memory, as P3b) is measured beside them, and two processes of
bench/bare_floors.py's `proxy` on the port (SO_REUSEPORT): the least a Python reverse proxy
does (httptools and uvloop, each request forwarded as received; `P3W-bare`). wrk, one thread, 32
connections, interleaved rounds; medians of per-round ratios (goal ≥ 0.4). Taken under load
from other jobs on the shared machine.
"""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from bench import fixtures
from bench.harness import Figure, load_note
from bench.p3_gateway import (
    Sample,
    _free_port,
    _gateway_config,
    _nginx_conf,
    _process,
    _proxy_server,
    _upstream_server,
    _wrk,
)

ROUNDS = 3
SECONDS = 3
REDIS = ("127.0.0.1", 6379)


def run() -> list[Figure]:
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError:
        print("  P3W skipped: no Redis on 127.0.0.1:6379 (more than one worker needs it)")
        return []
    ring = fixtures.keyring("ES256")
    token = fixtures.mint_many(ring, 1)[0]
    with tempfile.TemporaryDirectory(prefix="tw-p3w-") as name:
        tmp = Path(name)
        (tmp / "jwks.json").write_text(json.dumps(ring.jwks()))
        samples = _measure(tmp, token)
    return _figures(samples)


def _measure(tmp: Path, token: str) -> dict[str, list[Sample]]:
    up, px, two, one, bare = (_free_port() for _ in range(5))
    up_conf = _nginx_conf(tmp, "up", _upstream_server(up))
    px_conf = _nginx_conf(tmp, "px", _proxy_server(px, up))
    px_conf.write_text(px_conf.read_text().replace("worker_processes 1;", "worker_processes 2;"))
    two_conf = _gateway_config(tmp, "two", two, up, True)
    prefix = f"tw-bench-p3w-{secrets.token_hex(4)}:"
    text = two_conf.read_text().replace(
        "rate_limits:\n",
        f"workers: 2\nrate_limits:\n  redis_url: redis://{REDIS[0]}:{REDIS[1]}/0\n"
        f'  redis_prefix: "{prefix}"\n',
    )
    two_conf.write_text(text)
    one_conf = _gateway_config(tmp, "one", one, up, True)
    nginx = ["nginx", "-g", "daemon off;", "-c"]
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    proxy_bare = [sys.executable, "-m", "bench.bare_floors", "proxy", str(bare), str(up)]
    with (
        _process([*nginx, str(up_conf), "-p", str(tmp / "up")], up),
        _process([*nginx, str(px_conf), "-p", str(tmp / "px")], px) as proxy,
        _process([sys.executable, "-c", code, str(two_conf)], two) as gw_two,
        _process([sys.executable, "-c", code, str(one_conf)], one) as gw_one,
        _process(proxy_bare, bare) as bare_one,
        _process(proxy_bare, bare) as bare_two,
    ):
        targets = {
            "nginx2": (f"http://127.0.0.1:{px}/", [proxy.pid]),
            "workers2": (f"http://127.0.0.1:{two}/", [gw_two.pid]),
            "workers1": (f"http://127.0.0.1:{one}/", [gw_one.pid]),
            "bare2": (f"http://127.0.0.1:{bare}/", [bare_one.pid, bare_two.pid]),
        }
        for url, _pid in targets.values():
            _wrk(url, token, 1)  # warm-up: connections, caches, the token's validation
        samples: dict[str, list[Sample]] = {name: [] for name in targets}
        for round_ in range(ROUNDS):
            for name, (url, (pid, *others)) in targets.items():
                sample = _wrk(url, token, SECONDS, pid, extra=others)
                samples[name].append(sample)
                print(
                    f"  round {round_ + 1} {name:>8}: {sample.rps:8.0f} req/s, "
                    f"p50 {sample.p50 * 1e3:.2f} ms, p99 {sample.p99 * 1e3:.2f} ms, "
                    f"CPU {sample.cpu * 1e6:.0f} µs/request"
                )
    return samples


def _figures(samples: dict[str, list[Sample]]) -> list[Figure]:
    def ratio(a: str, b: str) -> float:
        pairs = zip(samples[a], samples[b], strict=True)
        return statistics.median(x.rps / y.rps for x, y in pairs)

    def med(name: str, field: str) -> float:
        values: list[float] = [getattr(sample, field) for sample in samples[name]]
        return statistics.median(values)

    p3w = Figure(
        "P3W",
        ratio("workers2", "nginx2"),
        "gateway full policy, workers: 2 (limits in Redis) ÷ nginx proxy_pass, 2 workers",
        [
            f"{med('workers2', 'rps'):.0f} vs {med('nginx2', 'rps'):.0f} req/s",
            f"one worker {med('workers1', 'rps'):.0f} req/s "
            f"(×{ratio('workers2', 'workers1'):.2f} for two)",
            f"CPU per request {med('workers2', 'cpu') * 1e6:.0f} µs "
            f"vs {med('nginx2', 'cpu') * 1e6:.0f} µs",
            "goal ≥ 0.4",
            load_note(),
        ],
    )
    bare = Figure(
        "P3W-bare",
        ratio("bare2", "nginx2"),
        "the least Python reverse proxy (httptools and uvloop, no ASGI, no policy), 2 processes "
        "÷ nginx proxy_pass, 2 workers (what a Python proxy allows P3W)",
        [
            f"{med('bare2', 'rps'):.0f} vs {med('nginx2', 'rps'):.0f} req/s",
            f"CPU per request {med('bare2', 'cpu') * 1e6:.0f} µs",
            "printed",
        ],
    )
    return [p3w, bare]
