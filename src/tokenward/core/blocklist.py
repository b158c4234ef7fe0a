"""Addresses blocked for a while: the gateway and the authorization server ask `is_blocked(ip)`.

`is_blocked` is synchronous and a dict read, because it runs on every request. `IpBlocklist` is
the port; its backends are in store/: `memory_blocklist.MemoryBlocklist`, and
`redis_blocklist.RedisBlocklist`, which keeps the same in-process view and shares it through
Redis. Every backend accepts what `blockable_ip` accepts and matches by `canonical_ip`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class BlockEntry:
    ip: str
    until: float
    reason: str
    by: str  # "monitor:<detector>" or "admin:<name>"


class IpBlocklist(Protocol):
    def is_blocked(self, ip: str) -> bool: ...

    def block(self, ip: str, seconds: float, reason: str, by: str) -> BlockEntry: ...

    def unblock(self, ip: str) -> bool: ...

    def entries(self) -> Sequence[BlockEntry]: ...


class BlockRefused(ValueError):
    """Not an address that may be blocked; the message says why (an admin sees it as a 400)."""


def blockable_ip(text: str) -> str:
    """The canonical address to block, or BlockRefused. Every `block` goes through here.

    Blocks match one address (a dict read per request), so a network would silently match
    nothing: only one address, or its /32 (/128) host prefix, is accepted. Addresses no real
    client sends from (unspecified, multicast, broadcast) are refused, and so is loopback: a
    local proxy, health checks and the server's own tools come from there, and blocking it
    would refuse everyone behind them.
    """
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        raise BlockRefused("ip is required: one IPv4 or IPv6 address")
    if len(value) > 64:
        raise BlockRefused("ip must be one IPv4 or IPv6 address")
    try:
        network = ipaddress.ip_network(value.removeprefix("[").removesuffix("]"), strict=True)
    except ValueError:
        raise BlockRefused(
            "ip must be one IPv4 or IPv6 address (a network is not blockable)"
        ) from None
    if network.num_addresses != 1:
        raise BlockRefused(
            f"ip must be one address, not a /{network.prefixlen} network: blocks match one address"
        )
    address = network.network_address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or str(address) == "255.255.255.255":
        raise BlockRefused("ip must be a unicast client address")
    if address.is_loopback:
        raise BlockRefused("loopback addresses cannot be blocked (local proxies and tools)")
    return str(address)


def canonical_ip(ip: str) -> str:
    """One spelling per address (IPv4-mapped IPv6 as IPv4), so a block cannot be sidestepped."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
