"""Requests to URLs that someone else chose (a receiver's RFC 8935 push endpoint, a relying
party's back-channel logout URI, a client's registered `jwks_uri`) reach public addresses only,
so they cannot be aimed at this server's own network (SSRF): not loopback, private, link-local
(cloud metadata at 169.254.169.254), multicast, unspecified, reserved or otherwise non-global
addresses.

The URL's syntax is `client_uris.check_uri`'s (https, or http on loopback only), checked when it
is registered and again before each request; plain http and loopback addresses are refused too
unless `allow_loopback` (development and tests, the `outbound_allow_loopback` setting).

The addresses are checked when the connection is made, not beforehand: `GuardedBackend` resolves
the host, refuses if any address it resolves to is refused, and connects to the address it
checked, so a name that changes its answer between a check and the connect (DNS rebinding) gains
nothing. TLS still verifies the certificate against the URL's host name. No proxy from the
environment is used (it would make the connection for us, unchecked), and no redirect followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from tokenward.oauth.client_uris import UriError, check_uri

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0  # seconds, when the caller gives no connect timeout
MAX_ADDRESSES = 16  # of one name's answer, checked; a longer answer is refused


class OutboundRefused(ValueError):
    """The URL, or an address its host resolves to, may not be reached; the message says why."""


class AddressRefused(httpcore.ConnectError):
    """Raised at connect time; httpx wraps it in an `httpx.ConnectError` whose cause is this."""


# IPv6 prefixes that carry an IPv4 address a translator or tunnel will deliver to: checking
# only the IPv6 form would let 64:ff9b::a00:1 reach 10.0.0.1 through a NAT64 gateway.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: never global
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address `address` leads to: mapped, NAT64, 6to4, Teredo or IPv4-compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if address.sixtofour is not None:
        return address.sixtofour  # 2002:a00:1:: tunnels to 10.0.0.1
    if address.teredo is not None:
        return address.teredo[1]  # the client behind the Teredo relay
    if address in NAT64_WELL_KNOWN or (
        address in IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1 (checked as IPv6)
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: IpAddress, *, allow_loopback: bool) -> str | None:
    """Why `address` may not be reached, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return "not a public address"
        inner = embedded_ipv4(address)
        if inner is not None:
            problem = address_problem(inner, allow_loopback=allow_loopback)
            if problem is not None or address.ipv4_mapped is not None:
                return problem  # a mapped address is its IPv4 address; others are both
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    for refused, problem in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_link_local, "a link-local address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),  # reserved, shared (100.64/10), ...
    ):
        if refused:
            return problem
    return None


def url_problem(url: str, *, allow_loopback: bool) -> str | None:
    """Why `url` may not be fetched, judged on its text alone, or None."""
    try:
        check_uri(url, "the URL")
    except UriError as exc:
        return str(exc)
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" and not allow_loopback:
        return "the URL must be https"
    host = (parts.hostname or "").lower()
    literal = _literal(host)
    if literal is not None:
        return address_problem(literal, allow_loopback=allow_loopback)
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 §6.3: always loopback
        return None if allow_loopback else "a loopback address"
    return None


async def check_url(url: str, *, allow_loopback: bool) -> None:
    """`url`'s text and every address its host resolves to now (registration time: early
    feedback; the connect-time check is the one that holds). A name that does not resolve
    (yet) is accepted: there is nothing it could reach."""
    problem = url_problem(url, allow_loopback=allow_loopback)
    if problem:
        raise OutboundRefused(problem)
    host = urlsplit(url).hostname or ""
    try:
        addresses = await _resolve(host, 443, RESOLVE_TIMEOUT)
    except (OSError, TimeoutError):
        return
    for address in addresses:
        problem = address_problem(address, allow_loopback=allow_loopback)
        if problem:
            raise OutboundRefused(f"the host resolves to {problem}")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `address_problem` accepts."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self._allow_loopback = allow_loopback
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await _resolve(host, port, timeout or RESOLVE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the host: {type(exc).__name__}") from exc
        for address in addresses:
            problem = address_problem(address, allow_loopback=self._allow_loopback)
            if problem:
                raise AddressRefused(f"the host resolves to {problem}")
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not reached")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `GuardedBackend`."""

    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__(trust_env=False)
        # The pool httpx built, rebuilt the same way but over our backend: httpx takes no
        # network backend of its own (tests/oauth/test_outbound.py proves the swap works).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._pool._ssl_context,
            max_connections=self._pool._max_connections,
            max_keepalive_connections=self._pool._max_keepalive_connections,
            keepalive_expiry=self._pool._keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allow_loopback=allow_loopback),
        )


def refused_by_guard(exc: BaseException) -> bool:
    """Whether an httpx error is the guard's refusal (not worth retrying) rather than a
    network failure."""
    return isinstance(exc.__cause__, AddressRefused) or isinstance(exc, AddressRefused)


async def _resolve(host: str, port: int, seconds: float) -> list[IpAddress]:
    host = host.strip("[]")
    literal = _literal(host)
    if literal is not None:
        return [literal]
    async with asyncio.timeout(seconds):
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos or len(infos) > MAX_ADDRESSES:
        raise OSError("no usable answer")
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
