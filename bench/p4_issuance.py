"""P4/P5: the token endpoint and introspection over HTTP on loopback, beside oidc-provider.

Every server runs as its users run it (bench/contenders.py): `tokenward serve` on its default
SQLite data dir and on PostgreSQL, oidc-provider (pinned, bench/oidc-provider) in Node, all with
ES256 JWT access tokens and client_secret_basic. wrk drives one at a time, in interleaved
rounds, and each figure is the median of the per-round ratios tokenward ÷ oidc-provider. When
Node is absent, tokenward's rates are printed and the ratios are skipped, saying why.

- P4: client_credentials issuance; P4-pg the same on PostgreSQL;
- P4-floor, P4-own: bench/floor_app.py (a bare ASGI token endpoint on the same stack) ÷
  oidc-provider, and tokenward ÷ it;
- P5: introspection of an opaque access token (oidc-provider introspects only opaque ones);
  P5-floor and P5-own the same with the floor's bare introspection (no lookup at all);
- P5-unknown: introspection of tokens never issued, a different one per request (what an
  attacker holding client credentials can send): each is a store lookup on both sides;
- P4-refresh: refresh-token rotation; P4-code: authorization-code exchange (PKCE, ID token and
  refresh token in the answer): each request spends one credential minted before the round;
- P5-unknown-pg, P4-refresh-pg, P4-code-pg: the same three on PostgreSQL (each request reads or
  writes the database there), beside the same peer;
- P4-w2: client_credentials issuance by `tokenward serve --workers 2` (SQLite) beside
  oidc-provider in a node:cluster of 2 workers: both cores for each.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench import contenders, wrk
from bench.contenders import CODE_VERIFIER, REDIRECT_URI, Contender, PeerMissing
from bench.harness import Figure

ROUNDS = 3
# A pool round lasts about a second on a fast machine and its ratio moved ±0.15 between runs
# of the same code with 3 rounds (docs/performance.md): more rounds for a steadier median.
POOL_ROUNDS = 5
SECONDS = 3
POOL = 3000  # single-use credentials per round and server: the run stops when they are spent

Load = Callable[[Contender, Path], wrk.Load]


def _issue(server: Contender, _tmp: Path) -> wrk.Load:
    return wrk.Load(
        server.base + server.token_path,
        server.authorization(),
        body="grant_type=client_credentials&scope=read" + server.jwt_extra,
    )


def _introspect(server: Contender, _tmp: Path) -> wrk.Load:
    answer = server.token(
        {"grant_type": "client_credentials", "scope": "read"}
        | ({"resource": server.opaque_extra.split("=", 1)[1]} if server.opaque_extra else {}),
        client_id=server.opaque_client,
    )
    return wrk.Load(
        server.base + server.introspect_path,
        server.authorization(server.opaque_client),
        body=f"token={answer['access_token']}",
    )


def _unknown(server: Contender, tmp: Path) -> wrk.Load:
    pool = tmp / f"{server.name}-unknown.txt"
    # tokenward's opaque tokens start with twa_; oidc-provider's have no prefix, and a twa_
    # string is as unknown to it as any other.
    pool.write_text("".join(f"twa_{secrets.token_urlsafe(32)}\n" for _ in range(POOL)))
    return wrk.Load(
        server.base + server.introspect_path,
        server.authorization(server.opaque_client),
        pool=pool,
        prefix="token=",
    )


def _pooled(kind: str) -> Load:
    def load(server: Contender, tmp: Path) -> wrk.Load:
        pool = tmp / f"{server.name}-{kind}.txt"
        server.mint(kind, POOL, pool)  # type: ignore[operator]
        if kind == "refresh":
            prefix, suffix = "grant_type=refresh_token&refresh_token=", ""
        else:
            prefix = "grant_type=authorization_code&code="
            suffix = f"&redirect_uri={REDIRECT_URI}&code_verifier={CODE_VERIFIER}"
        return wrk.Load(
            server.base + server.token_path,
            server.authorization(),
            pool=pool,
            prefix=prefix,
            suffix=suffix + server.jwt_extra,
        )

    return load


def _measure(
    servers: list[Contender], load: Load, tmp: Path, rounds: int = ROUNDS
) -> dict[str, list[wrk.Result]]:
    results: dict[str, list[wrk.Result]] = {server.name: [] for server in servers}
    for _ in range(rounds):
        for server in servers:
            results[server.name].append(wrk.run(load(server, tmp), server.pids, SECONDS))
    return results


def _figure(
    name: str, what: str, results: dict[str, list[wrk.Result]], ours: str, peer: str | None
) -> Figure:
    rates = {key: statistics.median(r.rate for r in runs) for key, runs in results.items()}
    cpu = {key: statistics.median(r.cpu for r in runs) for key, runs in results.items()}
    details = [f"{key} {rates[key]:,.0f}/s, {cpu[key] * 1e3:.2f} ms CPU/req" for key in results]
    print(f"  {name}: " + "; ".join(details))
    if peer is None:
        return Figure(name, rates[ours], f"{what}/s, no peer: {_skipped}", details)
    ratio = statistics.median(
        a.rate / b.rate for a, b in zip(results[ours], results[peer], strict=True)
    )
    rounds = len(results[ours])
    return Figure(name, ratio, f"{what}, {ours} ÷ {peer}, median of {rounds} rounds", details)


_skipped = ""


def run() -> list[Figure]:
    global _skipped
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is needed for P4/P5: apt-get install -y wrk")
    print(f"  (2 cores; load average {os.getloadavg()[0]:.2f} when the run starts)")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ours = stack.enter_context(contenders.tokenward())
        ours_pg = stack.enter_context(contenders.tokenward(postgres=True))
        peer: Contender | None
        try:
            peer = stack.enter_context(contenders.oidc_provider())
        except PeerMissing as exc:
            print(f"  oidc-provider skipped: {exc}")
            _skipped, peer = str(exc), None
        peers = [peer] if peer is not None else []
        p = peer.name if peer is not None else None
        bare = stack.enter_context(contenders.floor())
        issue = _measure([ours, ours_pg, bare, *peers], _issue, tmp)
        figures = [
            _figure("P4", "client_credentials ES256 JWTs", _pick(issue, ours, p), ours.name, p),
            _figure("P4-pg", "the same on PostgreSQL", _pick(issue, ours_pg, p), ours_pg.name, p),
            # How far the stack itself could go: no framework, store or log, only the signature.
            _figure("P4-floor", "bare ASGI + ES256 on uvicorn", _pick(issue, bare, p), "floor", p),
            _figure("P4-own", "our request path", _pick(issue, ours, "floor"), ours.name, "floor"),
        ]
        intro = _measure([ours, bare, *peers], _introspect, tmp)
        figures += [
            _figure("P5", "opaque-token introspections", _pick(intro, ours, p), ours.name, p),
            _figure("P5-floor", "bare ASGI introspection", _pick(intro, bare, p), "floor", p),
            _figure("P5-own", "our introspection", _pick(intro, ours, "floor"), ours.name, "floor"),
        ]
        # The figures that read or write the database on every request, on both databases.
        for name, what, load in (
            ("P5-unknown", "unknown-token introspections", _unknown),
            ("P4-refresh", "refresh rotations", _pooled("refresh")),
            ("P4-code", "code exchanges", _pooled("code")),
        ):
            runs = _measure([ours, ours_pg, *peers], load, tmp, POOL_ROUNDS)
            figures.append(_figure(name, what, _pick(runs, ours, p), ours.name, p))
            on_pg = f"{what} on PostgreSQL"
            figures.append(_figure(f"{name}-pg", on_pg, _pick(runs, ours_pg, p), ours_pg.name, p))
        figures.append(_workers(stack, tmp, 2))
    return figures


def _workers(stack: ExitStack, tmp: Path, count: int) -> Figure:
    """P4 with `count` worker processes on each side (started last: the others are idle)."""
    ours = stack.enter_context(contenders.tokenward(workers=count))
    peers = [stack.enter_context(contenders.oidc_provider(count))] if not _skipped else []
    p = peers[0].name if peers else None
    issue = _measure([ours, *peers], _issue, tmp)
    return _figure(f"P4-w{count}", f"client_credentials, {count} workers", issue, ours.name, p)


def _pick(
    results: dict[str, list[wrk.Result]], ours: Contender, peer: str | None
) -> dict[str, list[wrk.Result]]:
    names = [ours.name] + ([peer] if peer else [])
    return {name: results[name] for name in names}
