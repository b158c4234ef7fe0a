"""P8 at the gateway: throughput with monitoring on ÷ off (goal ≥ 0.95).

Two gateway processes (`tokenward gateway --config`, one core's worth each in turn) with the
full policy of P3's `full` contender (bearer token from the validator cache, scope check, rate
limit, one audit line per request), in front of one nginx upstream answering from memory. "on"
adds the `monitor:` section: every decision becomes a usage event, queued without blocking and
shipped in batches to a Redis stream (the machine's Redis) for the servers' monitors, and the
deployment's shared blocklist is consulted on every request. "off" has no `monitor:` section.
The analytics themselves run at the authorization servers, in other processes: what this figure
prices is what the request path pays. After the rounds the stream is read back and its events
counted, so "on" is known to have shipped every event it claims.

wrk (one thread, 32 connections) alternates the order per round (off, on / on, off); the
figure is the geometric mean of the per-round ratios.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import cast

from redis import Redis

from bench import fixtures
from bench.harness import Figure
from bench.p3_gateway import (
    _free_port,
    _gateway_config,
    _nginx_conf,
    _process,
    _upstream_server,
    _wrk,
)
from tokenward.store.redis_event_relay import decode_batch

ROUNDS = int(os.environ.get("P8_ROUNDS", "8"))  # even: as many rounds in each order
SECONDS = int(os.environ.get("P8_SECONDS", "3"))
REDIS_URL = os.environ.get("P8_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def run() -> list[Figure]:
    if not _redis_reachable():
        print("  P8 (gateway) skipped: Redis at 127.0.0.1:6379 is not reachable")
        return []
    ring = fixtures.keyring("ES256")
    token = fixtures.mint_many(ring, 1)[0]
    stream = f"tw-bench:{secrets.token_hex(4)}:usage"
    reader = Redis.from_url(REDIS_URL)
    try:
        with tempfile.TemporaryDirectory(prefix="tw-p8-") as name:
            tmp = Path(name)
            (tmp / "jwks.json").write_text(json.dumps(ring.jwks()))
            rates, requests_on = _measure(tmp, token, stream)
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", reader.xrange(stream))
        events = sum(len(decode_batch(fields[b"e"])) for _id, fields in entries)
    finally:
        reader.delete(stream)
        reader.close()
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    ratio = statistics.geometric_mean(ratios)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"  P8 gateway: off {off:,.0f}/s, on {on:,.0f}/s; {events:,} events in the stream "
        f"for {requests_on:,} requests sent to 'on'"
    )
    return [
        Figure(
            "P8",
            ratio,
            "gateway throughput with monitoring on ÷ off, bearer route over HTTP",
            [
                "goal ≥ 0.95",
                f"off {off:,.0f}/s, on {on:,.0f}/s",
                f"{events:,} events shipped to Redis for {requests_on:,} requests"
                + ("" if events >= requests_on else " (EVENTS MISSING)"),
            ],
        )
    ]


def _measure(tmp: Path, token: str, stream: str) -> tuple[dict[str, list[float]], int]:
    up, port_off, port_on = (_free_port() for _ in range(3))
    up_conf = _nginx_conf(tmp, "up", _upstream_server(up))
    off_conf = _gateway_config(tmp, "off", port_off, up, True)
    on_conf = _gateway_config(tmp, "on", port_on, up, True)
    on_conf.write_text(
        on_conf.read_text()
        + f"monitor: {{redis_url: '{REDIS_URL}', stream: '{stream}', interval: 0.2}}\n"
    )
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    serve = [sys.executable, "-c", code]
    nginx = ["nginx", "-g", "daemon off;", "-c", str(up_conf), "-p", str(tmp / "up")]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    sent_on = 0
    with (
        _process(nginx, up),
        _process([*serve, str(off_conf)], port_off) as gw_off,
        _process([*serve, str(on_conf)], port_on) as gw_on,
    ):
        targets = {
            "off": (f"http://127.0.0.1:{port_off}/", gw_off.pid),
            "on": (f"http://127.0.0.1:{port_on}/", gw_on.pid),
        }
        for name, (url, _pid) in targets.items():
            warm = _wrk(url, token, 1)  # warm-up: connections, caches, the token's validation
            sent_on += warm.requests if name == "on" else 0
        for round_ in range(ROUNDS):
            for name in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                url, pid = targets[name]
                sample = _wrk(url, token, SECONDS, pid)
                rates[name].append(sample.rps)
                sent_on += sample.requests if name == "on" else 0
                print(
                    f"  round {round_ + 1} {name:>3}: {sample.rps:8.0f} req/s, "
                    f"CPU {sample.cpu * 1e6:.0f} µs/request"
                )
    return rates, sent_on
