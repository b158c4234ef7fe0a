"""P3C: nginx with `auth_request` to the gateway ÷ nginx `proxy_pass` alone, same upstream.

Three processes besides the load generator, all on 127.0.0.1: the upstream (an nginx worker
answering `200 ok` from memory), `nginx` (proxy_pass with upstream keep-alive, one worker),
and `edge`: one nginx worker running docs/edge.md's configuration as documented (decision
cache off: the gateway says no-store), asking one gateway process (`tokenward gateway`, full
policy: bearer token, scope, rate limit, audit line per request) on every request. wrk, one
thread and 32 connections, interleaved rounds; the figure is the median of per-round ratios
(goal ≥ 0.5). CPU per request covers nginx, and for `edge` the gateway too.

Beside them runs a floor: a second nginx with the same documented configuration, asking
bench/authz_floor.py instead of the gateway (a bare ASGI callable on the same uvicorn,
httptools and uvloop, that compares the credential and answers). `P3C-floor` (floor ÷ nginx)
says how far any decision service on this stack could take P3C; `P3C-own` (edge ÷ floor)
what the gateway's decision costs on top. A third nginx asks bench/bare_floors.py's `check`:
the credential compared and a canned answer written on httptools and uvloop, with no ASGI at
all. `P3C-bare` (bare ÷ nginx) is what the least possible Python check allows.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench import fixtures
from bench.harness import Figure, load_note
from bench.p3_gateway import (
    ROOT,
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


def _edge_server(port: int, upstream: int, gateway: int, cache: Path) -> str:
    """docs/edge.md's full nginx configuration with this run's addresses."""
    text = (ROOT / "docs" / "edge.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```nginx\n")[1:]]
    # The full server configuration, not the certificate-header snippet documented before it.
    block = next(b for b in blocks if "upstream tokenward" in b and "server {" in b)
    for documented, actual in {
        "127.0.0.1:8080": f"127.0.0.1:{gateway}",
        "127.0.0.1:9000": f"127.0.0.1:{upstream}",
        "127.0.0.1:8000": f"127.0.0.1:{port}",
        "/dev/shm/tokenward-authz": str(cache),  # noqa: S108 - the documented path
    }.items():
        block = block.replace(documented, actual)
    listen = f"    listen 127.0.0.1:{port};"
    return block.replace(listen, f"{listen}\n    keepalive_requests 1000000;", 1)


def run() -> list[Figure]:
    ring = fixtures.keyring("ES256")
    token = fixtures.mint_many(ring, 1)[0]
    with tempfile.TemporaryDirectory(prefix="tw-p3c-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # nginx's workers (nobody, under root) reach the cache directory
        (tmp / "jwks.json").write_text(json.dumps(ring.jwks()))
        samples = _measure(tmp, token)
    return _figures(samples)


def _measure(tmp: Path, token: str) -> dict[str, list[Sample]]:
    up, px, edge, gw, low, floor_port, top, bare = (_free_port() for _ in range(8))
    up_conf = _nginx_conf(tmp, "up", _upstream_server(up))
    px_conf = _nginx_conf(tmp, "px", _proxy_server(px, up))
    edge_conf = _nginx_conf(tmp, "edge", _edge_server(edge, up, gw, tmp / "edge" / "cache"))
    low_conf = _nginx_conf(tmp, "low", _edge_server(low, up, floor_port, tmp / "low" / "cache"))
    top_conf = _nginx_conf(tmp, "top", _edge_server(top, up, bare, tmp / "top" / "cache"))
    config = _gateway_config(tmp, "gw", gw, up, True)
    with config.open("a") as extra:
        extra.write("trusted_proxies: [127.0.0.1/32]\nauthz: {mode: nginx}\n")
    nginx = ["nginx", "-g", "daemon off;", "-c"]
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    floor = [
        *(sys.executable, "-m", "uvicorn", "bench.authz_floor:app", "--loop", "uvloop"),
        *("--http", "httptools", "--no-access-log", "--log-level", "warning"),
        *("--host", "127.0.0.1", "--port", str(floor_port)),
    ]
    check = [sys.executable, "-m", "bench.bare_floors", "check", str(bare)]
    os.environ["P3C_FLOOR_TOKEN"] = token  # what the floor expects; its process inherits it
    with (
        _process([*nginx, str(up_conf), "-p", str(tmp / "up")], up),
        _process([*nginx, str(px_conf), "-p", str(tmp / "px")], px) as proxy,
        _process([sys.executable, "-c", code, str(config)], gw) as gateway,
        _process([*nginx, str(edge_conf), "-p", str(tmp / "edge")], edge) as front,
        _process(floor, floor_port) as floor_app,
        _process([*nginx, str(low_conf), "-p", str(tmp / "low")], low) as floor_front,
        _process(check, bare) as bare_check,
        _process([*nginx, str(top_conf), "-p", str(tmp / "top")], top) as bare_front,
    ):
        targets = {
            "nginx": (f"http://127.0.0.1:{px}/", [proxy.pid]),
            "edge": (f"http://127.0.0.1:{edge}/", [front.pid, gateway.pid]),
            "floor": (f"http://127.0.0.1:{low}/", [floor_front.pid, floor_app.pid]),
            "bare": (f"http://127.0.0.1:{top}/", [bare_front.pid, bare_check.pid]),
        }
        for url, _pids in targets.values():
            _wrk(url, token, 1)  # warm-up: connections, caches, the token's validation
        samples: dict[str, list[Sample]] = {name: [] for name in targets}
        for round_ in range(ROUNDS):
            # Odd rounds in reverse: drift within a round favours no contender (as in P3).
            order = list(targets.items())
            for name, (url, pids) in order if round_ % 2 == 0 else order[::-1]:
                sample = _wrk_all(url, token, pids)
                samples[name].append(sample)
                print(
                    f"  round {round_ + 1} {name:>6}: {sample.rps:8.0f} req/s, "
                    f"p50 {sample.p50 * 1e3:.2f} ms, p99 {sample.p99 * 1e3:.2f} ms, "
                    f"CPU {sample.cpu * 1e6:.0f} µs/request"
                )
    return samples


def _wrk_all(url: str, token: str, pids: list[int]) -> Sample:
    """wrk against `url`, CPU per request summed over every process in `pids` (and children)."""
    first, *others = pids
    return _wrk(url, token, SECONDS, first, extra=others)


def _ratio(top: list[Sample], bottom: list[Sample]) -> float:
    return statistics.median(t.rps / b.rps for t, b in zip(top, bottom, strict=True))


def _median(runs: list[Sample], field: str) -> float:
    values: list[float] = [getattr(sample, field) for sample in runs]
    return statistics.median(values)


def _figures(samples: dict[str, list[Sample]]) -> list[Figure]:
    edge, nginx, floor, bare = (samples[n] for n in ("edge", "nginx", "floor", "bare"))
    med = _median
    return [
        _p3c(edge, nginx),
        Figure(
            "P3C-floor",
            _ratio(floor, nginx),
            "nginx auth_request to a bare ASGI check on the same uvicorn stack ÷ nginx "
            "proxy_pass alone (what the stack allows P3C)",
            [
                f"{med(floor, 'rps'):.0f} vs {med(nginx, 'rps'):.0f} req/s",
                f"CPU per request {med(floor, 'cpu') * 1e6:.0f} µs (nginx + floor)",
                "printed",
            ],
        ),
        Figure(
            "P3C-bare",
            _ratio(bare, nginx),
            "nginx auth_request to the least Python check (httptools and uvloop, no ASGI, a "
            "canned answer) ÷ nginx proxy_pass alone (what any Python service allows P3C)",
            [
                f"{med(bare, 'rps'):.0f} vs {med(nginx, 'rps'):.0f} req/s",
                f"CPU per request {med(bare, 'cpu') * 1e6:.0f} µs (nginx + bare check)",
                "printed",
            ],
        ),
        Figure(
            "P3C-own",
            _ratio(edge, floor),
            "the same with the gateway ÷ with the floor (what the gateway's decision costs)",
            [f"{med(edge, 'rps'):.0f} vs {med(floor, 'rps'):.0f} req/s", "printed"],
        ),
    ]


def _p3c(edge: list[Sample], nginx: list[Sample]) -> Figure:
    med = _median
    return Figure(
        "P3C",
        _ratio(edge, nginx),
        "nginx auth_request to the gateway, decision cache off, ÷ nginx proxy_pass alone",
        [
            f"{med(edge, 'rps'):.0f} vs {med(nginx, 'rps'):.0f} req/s",
            f"CPU per request {med(edge, 'cpu') * 1e6:.0f} µs (nginx + gateway) "
            f"vs {med(nginx, 'cpu') * 1e6:.0f} µs",
            f"p50 {med(edge, 'p50') * 1e3:.2f} vs {med(nginx, 'p50') * 1e3:.2f} ms",
            "goal ≥ 0.5",
            load_note(),
        ],
    )
