"""`monitor.replay`: audit lines become the events the gateway emitted; bad lines are refused
with a reason, and the CLI reports them by number and goes on."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tokenward.deploy.cli import app
from tokenward.monitor.replay import ReplayError, parse_audit_line

LINE = {
    "time": "2027-01-14T10:00:01.250Z",
    "route": "items",
    "method": "GET",
    "status": 200,
    "decision": "allow",
    "reason": "ok",
    "sub": "alice",
    "client_id": "web",
    "jti": "j1",
    "sid": "s1",
    "client_ip": "198.51.100.7",
    "path": "/items/3",
    "user_agent": "Firefox/133",
    "latency_ms": 1.2,
}


def test_an_audit_line_is_the_event_the_gateway_emitted() -> None:
    event = parse_audit_line(orjson.dumps(LINE))
    assert event is not None
    assert event.time == 1_799_920_801.25
    assert (event.sub, event.jti, event.sid, event.ip, event.path, event.user_agent) == (
        "alice", "j1", "s1", "198.51.100.7", "/items/3", "Firefox/133"
    )  # fmt: skip
    assert (event.status, event.decision, event.reason, event.source) == (
        200, "allow", "ok", "gateway"
    )  # fmt: skip
    older = {k: v for k, v in LINE.items() if k not in ("path", "user_agent", "sid")}
    event = parse_audit_line(orjson.dumps(older))
    assert event is not None
    assert (event.path, event.user_agent, event.sid) == (None, None, None)
    assert parse_audit_line(b"  \n") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": "yesterday"}, "RFC 3339"),
        ({"status": "200"}, "HTTP status"),
        ({"status": 99}, "HTTP status"),
        ({"decision": "maybe"}, "allow or deny"),
        ({"sub": 42}, "sub must be a string"),
        ({"route": "x" * 600}, "at most 512"),
        ({"client_ip": None}, "client_ip must be a string"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        parse_audit_line(orjson.dumps({**LINE, **change}))
    with pytest.raises(ReplayError, match="not JSON"):
        parse_audit_line(b"{nope")
    with pytest.raises(ReplayError, match="too long"):
        parse_audit_line(b" " * 20_000)


def test_the_cli_reports_bad_lines_by_number_and_replays_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("TOKENWARD_MONITOR_")]:
        monkeypatch.delenv(name)
    forged = {**LINE, "status": 401, "decision": "deny", "reason": "invalid_token",
              "sub": None, "client_id": None, "jti": None, "sid": None,
              "client_ip": "192.0.2.66"}  # fmt: skip
    lines = [b"not json"]
    for n in range(40):
        lines.append(orjson.dumps({**forged, "time": f"2027-01-14T10:00:{10 + n:02d}.000Z"}))
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(app, ["monitor", "replay", str(audit)])
    assert result.exit_code == 0, result.output
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    detectors = {(a["detector"], a["target"]["kind"], a["target"]["value"]) for a in alerts}
    assert ("risk", "ip", "192.0.2.66") in detectors
    assert ("failures", "ip", "192.0.2.66") in detectors  # the rules run too, in event time
    assert "line 1: not JSON" in result.stderr
    without = CliRunner().invoke(app, ["monitor", "replay", "--no-risk", str(audit)])
    assert "risk" not in {orjson.loads(line)["detector"] for line in without.stdout.splitlines()}
    missing = CliRunner().invoke(app, ["monitor", "replay", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
