"""One JSON line per gateway decision: who asked for what, what was decided, and why.

The record is built from verified claims and fixed reason codes only; the credential itself,
cookies, query strings and request bodies never reach it. Lines are written through a buffer
and flushed every `flush_interval` seconds (and at shutdown): a syscall per line would cost
the hot path more than the rest of the policy together, at the price of losing at most one
interval of lines if the process is killed hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from tokenward.core.claims import AccessToken
from tokenward.core.lifecycle import cancel_and_wait
from tokenward.datadir import open_private

_LINE = (
    b'{"time":"%b","route":%b,"method":%b,"status":%d,"decision":"%b","reason":"%b",%b,'
    b'"client_ip":%b,"path":%b,"user_agent":%b,"latency_ms":%.3f%b}\n'
)
MAX_AUDIT_PATH = 1024  # longer paths are cut (the gateway's limits bound them anyway)
_NOBODY = b'"sub":null,"client_id":null,"jti":null,"sid":null'


class AuditRecord:
    """Filled in as the request goes through the gateway; written once at the end."""

    __slots__ = (
        "admitted",
        "agent",
        "ip",
        "method",
        "path",
        "policies",
        "reason",
        "route",
        "token",
    )

    def __init__(self, method: str) -> None:
        self.method = method
        self.route = "-"
        self.reason = "ok"  # a fixed code (policy.py, upstream.py): safe in JSON unescaped
        self.ip = "-"
        self.token: AccessToken | None = None
        self.admitted = False  # the policy allowed it (an upstream may still fail it)
        self.policies: tuple[str, ...] | None = None  # Cedar's determining policies, if judged
        self.path: str | None = None  # the request path, never the query string
        self.agent: str | None = None  # the User-Agent header, cut at 256 characters


class AuditLog:
    def __init__(self, stream: IO[bytes], flush_interval: float = 0.5) -> None:
        self._stream = stream
        self._flush_interval = flush_interval
        # Writer and flusher both run on the event loop: no lock on the hot path. `close` from
        # another thread (shutdown) takes this one against a concurrent flush only.
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._second = -1
        self._second_text = b""
        self._strings: dict[str, bytes] = {}
        self._tokens: dict[tuple[str, str, str, str | None], bytes] = {}
        self._policy_lists: dict[tuple[str, ...], bytes] = {}

    @classmethod
    def open(cls, path: str | None, flush_interval: float = 0.5) -> AuditLog | None:
        """`path`: a file, created 0600 (lines name subjects, clients and addresses) and
        tightened if it was more open; "-": standard output; None: no audit log. DataDirError
        when the file cannot be opened or made private."""
        if path is None:
            return None
        if path == "-":
            return cls(sys.stdout.buffer, flush_interval)
        return cls(open(open_private(Path(path)), "ab", buffering=256 * 1024), flush_interval)

    def write(self, record: AuditRecord, status: int, now: float, latency: float) -> None:
        # Formatted by hand around JSON-encoded pieces: every text that comes from outside
        # (route names, methods, claims, addresses) goes through orjson, once per distinct
        # value where values repeat; this costs a third of `orjson.dumps` on a fresh dict.
        self._stream.write(
            _LINE
            % (
                self._timestamp(now),
                self._json(record.route),
                self._json(record.method),
                status,
                b"allow" if record.admitted else b"deny",
                record.reason.encode("ascii", "replace"),
                self._who(record.token),
                orjson.dumps(record.ip),
                orjson.dumps(record.path),
                self._json(record.agent) if record.agent is not None else b"null",
                latency * 1000,
                self._policies(record.policies),
            )
        )

    def _json(self, text: str) -> bytes:
        cache = self._strings
        value = cache.get(text)
        if value is None:
            if len(cache) >= 1024:
                cache.clear()
            value = cache[text] = orjson.dumps(text)
        return value

    def _policies(self, policies: tuple[str, ...] | None) -> bytes:
        if policies is None:
            return b""
        cache = self._policy_lists
        value = cache.get(policies)
        if value is None:
            if len(cache) >= 1024:
                cache.clear()
            value = cache[policies] = b',"policies":' + orjson.dumps(policies)
        return value

    def _who(self, token: AccessToken | None) -> bytes:
        if token is None:
            return _NOBODY
        key = (token.jti, token.sub, token.client_id, token.sid)
        cache = self._tokens
        value = cache.get(key)
        if value is None:
            if len(cache) >= 10_000:
                cache.clear()
            fields = {
                "sub": token.sub,
                "client_id": token.client_id,
                "jti": token.jti,
                "sid": token.sid,
            }
            value = cache[key] = orjson.dumps(fields)[1:-1]
        return value

    def _timestamp(self, now: float) -> bytes:
        """RFC 3339 UTC with milliseconds; the date part is formatted once per second."""
        second = int(now)
        if second != self._second:
            self._second = second
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second_text = text.encode("ascii")
        return b"%b.%03dZ" % (self._second_text, int((now - second) * 1000))

    def flush(self) -> None:
        # A closed stream or a full disk must not stop the gateway serving.
        with self._lock, contextlib.suppress(ValueError, OSError):
            self._stream.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flusher())

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self.flush()

    def close(self) -> None:
        self.flush()
        if self._stream is not sys.stdout.buffer:
            self._stream.close()
