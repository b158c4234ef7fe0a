"""Who the client is behind reverse proxies: one rule for the gateway and the server.

X-Forwarded-For is believed only hop by hop from a trusted proxy: anyone can send the header,
so an address in it counts only if the hop that added it (the next one to the right, or the
peer for the last entry) is a proxy we trust.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(peer: str | None, forwarded: list[bytes], trusted: tuple[IpNetwork, ...]) -> str:
    """The client's IP. X-Forwarded-For is believed only hop by hop from a trusted proxy:
    walk it from the right, skipping trusted proxies; the first other address is the client."""
    if peer is None:
        return "-"
    if not trusted or not forwarded or not in_networks(parse_ip(peer), trusted):
        return peer
    hops = [hop.strip() for value in forwarded for hop in value.decode("latin-1").split(",")]
    client = peer
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            break  # garbage in the chain: stop at the last hop we could verify
        client = str(address)
        if not in_networks(address, trusted):
            break
    return client


def parse_ip(text: str | None) -> IpAddress | None:
    if not text:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 for every rule
    return address


def in_networks(address: IpAddress | None, networks: tuple[IpNetwork, ...]) -> bool:
    if address is None:
        return False
    return any(address.version == net.version and address in net for net in networks)


def parse_networks(items: Iterable[str]) -> tuple[IpNetwork, ...]:
    """CIDRs (or single addresses) as networks; ValueError naming the first that is not one."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not an IP network (CIDR)") from None
    return tuple(networks)
