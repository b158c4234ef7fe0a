"""The outbound guard (SSRF): which addresses and URLs an outbound delivery may reach, checked on
the text, at registration (resolving the host), and when connecting, against a real HTTP server
on loopback."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.live import free_port, serve_in_thread
from tokenward.oauth.outbound import (
    AddressRefused,
    GuardedTransport,
    OutboundRefused,
    address_problem,
    check_url,
    refused_by_guard,
    url_problem,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),  # cloud metadata
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 (an address judged, not bound)
        ("::", "an unspecified address"),
        ("::ffff:10.0.0.1", "a private address"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "a loopback address"),
        ("100.64.0.1", "not a public address"),  # shared address space (CGNAT)
        # IPv6 forms that a translator or tunnel delivers to an IPv4 address (RFC 6052, 3056,
        # 4380, 4291): judged by the IPv4 address they lead to.
        ("64:ff9b::a00:1", "a private address"),  # NAT64 to 10.0.0.1
        ("64:ff9b::7f00:1", "a loopback address"),  # NAT64 to 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 to the metadata address
        ("64:ff9b:1::a00:1", "not a public address"),  # local-use NAT64 prefix (RFC 8215)
        ("2002:a00:1::1", "a private address"),  # 6to4 from 10.0.0.1
        ("2002:a9fe:a9fe::1", "a link-local address"),  # 6to4 from 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a private address"),  # Teredo to 10.0.0.1
        ("::a00:1", "a private address"),  # IPv4-compatible 10.0.0.1
        ("::ffff:8.8.8.8", None),  # a mapped public address is that address
        ("64:ff9b::808:808", None),  # NAT64 to a public address
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_loopback=False) == problem


def test_loopback_alone_is_allowed_by_the_development_setting() -> None:
    assert address_problem(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_problem(ipaddress.ip_address("::1"), allow_loopback=True) is None
    problem = address_problem(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert problem == "a private address"


@pytest.mark.parametrize(
    ("url", "allow_loopback", "refused"),
    [
        ("https://rx.example/events", False, False),
        ("http://rx.example/events", False, True),  # http only on loopback (client_uris)
        ("http://127.0.0.1:8080/events", False, True),  # http not allowed at all
        ("http://127.0.0.1:8080/events", True, False),
        ("https://127.0.0.1/events", False, True),
        ("https://[::1]/events", False, True),
        ("https://localhost/events", False, True),
        ("https://api.localhost/events", False, True),
        ("https://10.0.0.1/events", True, True),
        ("https://169.254.169.254/latest/meta-data", False, True),
        ("https://user@rx.example/events", False, True),
        ("ftp://rx.example/events", False, True),
    ],
)
def test_url_problem(url: str, allow_loopback: bool, refused: bool) -> None:
    assert (url_problem(url, allow_loopback=allow_loopback) is not None) == refused


async def test_registration_resolves_the_host() -> None:
    with pytest.raises(OutboundRefused, match="loopback"):
        await check_url("https://localhost/events", allow_loopback=False)
    await check_url("https://localhost/events", allow_loopback=True)
    # A name that does not resolve (yet) reaches nothing: accepted, and checked when connecting.
    await check_url("https://no-such-host.invalid/events", allow_loopback=False)


@pytest.fixture
def server() -> Iterator[tuple[int, threading.Event]]:
    reached = threading.Event()

    async def answer(_request: Request) -> Response:
        reached.set()
        return Response(b"ok")

    port = free_port()
    app = Starlette(routes=[Route("/", answer, methods=["GET", "POST"])])
    with serve_in_thread(app, port):
        yield port, reached


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_connection_is_refused_when_made(
    server: tuple[int, threading.Event], host: str
) -> None:
    # The text check is skipped here (the transport alone): the host is resolved and refused
    # at connect time, so a name that changed its answer since registration gains nothing.
    port, reached = server
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=False)) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await client.get(f"http://{host}:{port}/")

    assert refused_by_guard(refused.value)
    assert isinstance(refused.value.__cause__, AddressRefused)
    assert not reached.is_set()


async def test_the_development_setting_reaches_loopback(
    server: tuple[int, threading.Event],
) -> None:
    port, reached = server
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True)) as client:
        answer = await client.get(f"http://localhost:{port}/")

    assert (answer.status_code, answer.text) == (200, "ok")
    assert reached.is_set()


async def test_an_unreachable_host_is_a_network_error_not_a_refusal() -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True)) as client:
        with pytest.raises(httpx.ConnectError) as failed:
            await client.get(f"http://127.0.0.1:{free_port()}/")

    assert not refused_by_guard(failed.value)  # retried, like any network error
