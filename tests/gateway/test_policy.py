"""Route matching, client address behind trusted proxies, IP rules."""

from __future__ import annotations

import ipaddress

import pytest

from tokenward.core.proxies import client_address
from tokenward.gateway.config import parse_config
from tokenward.gateway.model import IpRules
from tokenward.gateway.policy import Denied, RouteTable, check_ip

ROUTES = """
routes:
  - {name: api, prefix: /api, upstreams: [http://h], auth: none}
  - {name: admin, prefix: /api/admin, methods: [POST], upstreams: [http://h], auth: none}
  - {name: root, prefix: /, upstreams: [http://h], auth: none}
"""
PROXIES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "fd00::/8"))


def test_longest_prefix_wins_and_segments_are_respected() -> None:
    table = RouteTable(parse_config(ROUTES).routes)
    assert table.match("/api/admin/x", "POST").name == "admin"
    assert table.match("/api/adminx", "POST").name == "api"
    assert table.match("/apis", "GET").name == "root"
    assert table.match("/api", "GET").name == "api"
    with pytest.raises(Denied) as caught:
        RouteTable(parse_config(ROUTES).routes[1:2]).match("/api/admin", "GET")
    assert caught.value.status == 405


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", [b"1.2.3.4"], "203.0.113.5"),  # untrusted peer: its XFF is ignored
        ("10.0.0.2", [b"1.2.3.4"], "1.2.3.4"),
        ("10.0.0.2", [b"1.2.3.4, 10.0.0.9"], "1.2.3.4"),  # skip trusted hops from the right
        ("10.0.0.2", [b"6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # a spoofed left entry is not believed
        ("10.0.0.2", [b"1.2.3.4", b"10.1.1.1"], "1.2.3.4"),  # several XFF fields are one list
        ("10.0.0.2", [b"garbage, 1.2.3.4"], "1.2.3.4"),
        ("10.0.0.2", [b"1.2.3.4, garbage"], "10.0.0.2"),
        ("fd00::1", [b"2001:db8::7"], "2001:db8::7"),
        ("10.0.0.2", [b"[2001:db8::7]"], "2001:db8::7"),
        ("10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_client_address(peer: str, forwarded: list[bytes], client: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == client


def test_ip_rules_v4_v6_and_mapped_addresses() -> None:
    rules = IpRules(
        allow=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
        deny=(ipaddress.ip_network("10.6.0.0/16"),),
    )
    check_ip(rules, "10.1.2.3")
    check_ip(rules, "2001:db8::1")
    check_ip(rules, "::ffff:10.1.2.3")
    for refused in ("10.6.0.1", "192.0.2.1", "2001:db9::1", "-", "::ffff:10.6.0.1"):
        with pytest.raises(Denied):
            check_ip(rules, refused)
