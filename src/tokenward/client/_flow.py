"""Protocol exchanges written once, run sync or async (the sans-I/O style of httpx.Auth flows).

A flow is a generator that yields what it needs done (an HTTP request, a pause, a blocking call
such as waiting for a browser) and receives the outcome. `Http.run` performs the steps with an
`httpx.Client` and `time.sleep`; `Http.arun` with an `httpx.AsyncClient` and `anyio.sleep`. So
each grant, with its DPoP nonce retry and its device polling, exists once, not twice.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread
import httpx

from tokenward.client.errors import unreachable
from tokenward.client.tls import ClientCertificate

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0
# Everything httpx raises for a request it could not complete: the SDK answers ServerUnreachable.
HTTP_FAILURES = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Blocking:
    """A call that blocks (waiting for a browser redirect): a worker thread runs it under async."""

    call: Callable[[], Any]


Step = httpx.Request | Sleep | Blocking
Flow = Generator[Step, Any, T]


def send(request: httpx.Request) -> Flow[httpx.Response]:
    reply = yield request
    if not isinstance(reply, httpx.Response):
        raise TypeError("a flow's request was answered with something other than a response")
    return reply


def pause(seconds: float) -> Flow[None]:
    yield Sleep(seconds)


def blocking(call: Callable[[], T]) -> Flow[T]:
    result = yield Blocking(call)
    return cast(T, result)


class Http:
    """The HTTP clients (and sleep) a token source talks to its authorization server with.

    Clients passed in are borrowed (their owner closes them); clients made here are closed by
    `close`/`aclose`. Redirects are never followed: a token endpoint that redirects is broken.
    """

    def __init__(
        self,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        certificate: ClientCertificate | None = None,
    ) -> None:
        """`certificate`: presented by the clients made here (RFC 8705 mTLS)."""
        self._verify: ssl.SSLContext | bool = (
            certificate.ssl_context() if certificate is not None else True
        )
        self._client = client
        self._async_client = async_client
        self._own_client = client is None
        self._own_async_client = async_client is None
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()  # threads racing to the first request make one client

    def __repr__(self) -> str:
        return "Http()"

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=DEFAULT_TIMEOUT, follow_redirects=False, verify=self._verify
                )
            return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        with self._lock:
            if self._async_client is None:
                self._async_client = httpx.AsyncClient(
                    timeout=DEFAULT_TIMEOUT, follow_redirects=False, verify=self._verify
                )
            return self._async_client

    def run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                step = flow.send(self._do(step))
        except StopIteration as done:
            return cast(T, done.value)
        finally:
            flow.close()

    async def arun(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                step = flow.send(await self._ado(step))
        except StopIteration as done:
            return cast(T, done.value)
        finally:
            flow.close()

    def _do(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            self._sleep(step.seconds)
            return None
        if isinstance(step, Blocking):
            return step.call()
        try:
            return self.client.send(step)
        except HTTP_FAILURES as exc:
            raise unreachable(step.url, exc) from exc

    async def _ado(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            await self._async_sleep(step.seconds)
            return None
        if isinstance(step, Blocking):
            return await anyio.to_thread.run_sync(step.call, abandon_on_cancel=True)
        try:
            return await self.async_client.send(step)
        except HTTP_FAILURES as exc:
            raise unreachable(step.url, exc) from exc

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._own_async_client and self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
        self.close()
