"""Drive a server with wrk (one thread, POST bodies from a Lua script) and charge its CPU.

A request is either one fixed body, or a body built around values from a pool file, one per
request (single-use credentials: refresh tokens, codes), the run stopping when the pool ends and
its rate taken over the time the pool lasted (wrk itself divides by the whole duration).
CPU per request is the server processes' user+system time (/proc) over the requests wrk
completed, so a faster figure bought with more cores shows up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONNECTIONS = 8
_TICKS = os.sysconf("SC_CLK_TCK")

_FIXED = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {auth}
"""

_POOL = """
-- wrk divides by its whole -d even when the pool ran out early: time the pool itself.
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} tw_timespec;
int clock_gettime(int clock, tw_timespec *now);
]]
local clock = ffi.new("tw_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
local values = {{}}
for line in io.lines({pool}) do values[#values + 1] = line end
local prefix, suffix, path = {prefix}, {suffix}, {path}
local headers = {{
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = {auth},
}}
local i, answered, started = 0, 0, nil
request = function()
  started = started or now()
  i = i + 1
  local value = values[math.min(i, #values)]
  return wrk.format("POST", path, headers, prefix .. value .. suffix)
end
response = function(status, headers, body)
  answered = answered + 1
  if answered == #values then
    io.write(string.format("pool spent in %.6f s\\n", now() - started))
    wrk.thread:stop()
  end
end
"""


@dataclass(frozen=True)
class Load:
    """What to send: `body`, or `prefix + value + suffix` for each value of `pool`."""

    url: str
    authorization: str
    body: str = ""
    pool: Path | None = None
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class Result:
    rate: float  # requests/s
    cpu: float  # server CPU seconds per request
    requests: int


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes and their threads (and reaped children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


def family(pid: int) -> list[int]:
    """The process and its descendants (workers), read from /proc."""
    found = [pid]
    for each in found:
        for task in Path(f"/proc/{each}/task").glob("*/children"):
            try:
                found.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def run(load: Load, pids: list[int], duration: int, connections: int = CONNECTIONS) -> Result:
    script = _script(load)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    processes = [p for pid in pids for p in family(pid)]
    try:
        before = cpu_seconds(processes)
        result = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "-s",
                handle.name,
                load.url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        )
        used = cpu_seconds(processes) - before
    finally:
        os.unlink(handle.name)
    out = result.stdout
    completed = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if completed is None or rate is None:
        raise RuntimeError(out + result.stderr)
    count = int(completed.group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    # A pool run may send up to one request per connection past its end (refused, uncounted).
    allowed = connections if load.pool is not None else 0
    if failed and int(failed.group(1)) > allowed:
        raise RuntimeError(f"wrk saw {failed.group(1)} failed responses:\n{out}")
    good = count - (int(failed.group(1)) if failed else 0)
    spent = re.search(r"pool spent in ([\d.]+) s", out)
    if spent is not None:  # the pool ran out before the duration: its own time is the rate's
        return Result(good / float(spent.group(1)), used / max(good, 1), good)
    return Result(float(rate.group(1)) * good / count, used / max(good, 1), good)


def _script(load: Load) -> str:
    if load.pool is None:
        return _FIXED.format(body=json.dumps(load.body), auth=json.dumps(load.authorization))
    path = "/" + load.url.split("/", 3)[3]
    return _POOL.format(
        pool=json.dumps(str(load.pool)),
        prefix=json.dumps(load.prefix),
        suffix=json.dumps(load.suffix),
        path=json.dumps(path),
        auth=json.dumps(load.authorization),
    )
