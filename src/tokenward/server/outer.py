"""The server's outermost ASGI layer, around Starlette's own error middleware so that every
response passes through it, 500s included: the access log, the request metrics and
`Strict-Transport-Security`. One layer for the three: each request's timing and status are
taken once (a separate metrics layer wrapped `send` and timed the request again).

The access log replaces uvicorn's, which prints the request target with its query, and
queries carry tokens (`?access_token=`, `id_token_hint=`, ...). Ours prints the method, the
path without the query (escaped, bounded), the status, the duration and the client; never a
query, never a header value.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenward.oauth.errors import ServerError
from tokenward.server.access_log import AccessLog

ACCESS_LOGGER = "tokenward.access"
MAX_LOGGED_PATH = 256
_PRINTABLE = re.compile(rb"[\x21\x23-\x5b\x5d-\x7e]*")  # what is printed unescaped below
access_log = logging.getLogger(ACCESS_LOGGER)
log = structlog.get_logger(__name__)


def logged_path(scope: Scope) -> str:
    """The path as sent (ASGI `raw_path` never holds the query), printable and bounded."""
    raw: bytes = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "replace")
    raw = raw.split(b"?", 1)[0]  # in case a server put the query there anyway
    if len(raw) <= MAX_LOGGED_PATH and _PRINTABLE.fullmatch(raw):  # the usual path: as it is
        return raw.decode("ascii")
    text = "".join(
        chr(byte) if 0x21 <= byte <= 0x7E and byte not in (0x22, 0x5C) else f"%{byte:02X}"
        for byte in raw[: MAX_LOGGED_PATH + 1]
    )
    return text if len(raw) <= MAX_LOGGED_PATH else text[:MAX_LOGGED_PATH] + "..."


Observe = Callable[[str, str, int, float], None]  # (path, method, status, seconds)


class Outer:
    """`hsts`: the Strict-Transport-Security value for every response, or None (http issuer).
    `access`: the buffered access log `tokenward serve` writes; None: the `tokenward.access`
    logger, with the same text. `observe`: told of every HTTP request once it is answered (the
    server's metrics); a request that failed before answering counts as a 500."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: str | None,
        access: AccessLog | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.app = app
        self.hsts = hsts.encode("latin-1") if hsts else None
        self.access = access
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.hsts is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"strict-transport-security", self.hsts))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - the last layer: a failure gets the 500 body
            if status:
                # Starlette re-raises after its 500 went out; the server would log the
                # traceback, whose message may quote request data. The error handler logged
                # the type already.
                log.debug("error_after_response", error=type(exc).__name__)
            else:
                # A deployment middleware failed outside the framework's error handling: the
                # same 500 body. No traceback, to the client or the log: its messages may
                # quote request data.
                log.error("unhandled_error", path=logged_path(scope), error=type(exc).__name__)  # noqa: TRY400
                await sending(_SERVER_ERROR_START)
                await sending({"type": "http.response.body", "body": SERVER_ERROR_BODY})
        finally:
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope["path"], scope["method"], status or 500, seconds)
            access = self.access
            if access is not None or access_log.isEnabledFor(logging.INFO):
                line = (
                    _client(scope),
                    scope.get("method", "-"),
                    logged_path(scope),
                    status or "-",
                    seconds * 1000,
                )
                if access is not None:
                    access.write(*line)
                else:
                    access_log.info('%s - "%s %s" %s %.1fms', *line)


UNEXPECTED = "the server hit an unexpected condition"  # every 500's description
SERVER_ERROR_BODY = orjson.dumps(ServerError(UNEXPECTED).body())
_SERVER_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        (b"content-length", str(len(SERVER_ERROR_BODY)).encode()),
    ],
}


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def uvicorn_log_config(worker: int | None = None) -> dict[str, Any]:
    """uvicorn's logging configuration, plus our access logger (stdout, uvicorn's style).
    `worker`: this process is that worker of `serve --workers N`; each line says which."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415 - only `tokenward serve` needs it

    formatters = {name: {**value} for name, value in LOGGING_CONFIG["formatters"].items()}
    if worker is not None:
        for formatter in formatters.values():
            formatter["fmt"] = formatter["fmt"].replace(
                "%(levelprefix)s ", f"%(levelprefix)s [worker {worker}] ", 1
            )
    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": formatters,
        "handlers": {**LOGGING_CONFIG["handlers"]},
        "loggers": {**LOGGING_CONFIG["loggers"]},
    }
    config["handlers"]["tokenward_access"] = {
        "formatter": "default",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"][ACCESS_LOGGER] = {
        "handlers": ["tokenward_access"],
        "level": "INFO",
        "propagate": False,
    }
    return config
