"""Weighted upstreams: smooth weighted round robin (nginx's algorithm) for a route's
`upstreams:` and `traffic.groups` entries written `{url:, weight:}`; plain URLs weigh 1."""

from __future__ import annotations

from collections import Counter

import pytest

from tokenward.gateway.config import parse_config
from tokenward.gateway.model import Route
from tokenward.gateway.proxy import Balancer, WeightedBalancer, balancer
from tokenward.gateway.traffic import Group, RouteTraffic, WeightedGroup
from tokenward.gateway.weighted import SmoothWeighted

ROUTE = """
routes:
  - name: api
    prefix: /api
    auth: none
    upstreams: {upstreams}
{rest}
"""


def route_of(upstreams: str, rest: str = "") -> Route:
    return parse_config(ROUTE.format(upstreams=upstreams, rest=rest)).routes[0]


def picks(weights: tuple[int, ...], count: int) -> list[int]:
    picker = SmoothWeighted(weights)
    return [picker.pick() for _ in range(count)]


def test_the_sequence_is_nginxs() -> None:
    # The example of nginx's smooth weighted round robin (commit 52327e0627f4): 5, 1, 1.
    assert "".join("abc"[i] for i in picks((5, 1, 1), 7)) == "aabacaa"


def test_every_cycle_of_the_total_gives_each_exactly_its_weight() -> None:
    assert picks((3, 1), 8) == [0, 0, 1, 0, 0, 0, 1, 0]
    for weights in [(3, 1), (1, 2, 3), (7, 1, 1, 1), (1000, 1), (2, 2)]:
        total = sum(weights)
        sequence = picks(weights, total * 5)
        for cycle in range(5):
            counts = Counter(sequence[cycle * total : (cycle + 1) * total])
            assert [counts[i] for i in range(len(weights))] == list(weights)


def test_light_upstreams_are_spread_through_the_cycle_not_bunched() -> None:
    # A naive weighted rotation would send 8 in a row to c, then a, then b.
    cycle = "".join("abc"[i] for i in picks((1, 1, 8), 10))
    assert cycle == "cccaccbccc"


@pytest.mark.parametrize("weights", [(), (0, 1), (1, 1001)])
def test_weights_out_of_range_are_refused(weights: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="1 to 1000"):
        SmoothWeighted(weights)


def test_plain_urls_keep_plain_round_robin() -> None:
    route = route_of("[http://127.0.0.1:9001, {url: http://127.0.0.1:9002}]")
    assert route.weights is None
    assert type(balancer(route)) is Balancer
    weighted = route_of("[{url: http://127.0.0.1:9001, weight: 3}, http://127.0.0.1:9002]")
    assert weighted.weights == (3, 1)
    assert isinstance(balancer(weighted), WeightedBalancer)


def test_a_weighted_route_orders_its_upstreams_picked_first_then_the_rest() -> None:
    route = route_of("[{url: http://127.0.0.1:9001, weight: 3}, http://127.0.0.1:9002]")
    chosen = balancer(route)
    orders = [[u.port for u in chosen.order()] for _ in range(4)]
    # The picked one first; the other stays behind it for failover on a refused connection.
    assert orders == [[9001, 9002], [9001, 9002], [9002, 9001], [9001, 9002]]
    counts = Counter(chosen.order()[0].port for _ in range(400))
    assert counts == {9001: 300, 9002: 100}


def test_group_weights_are_read_and_used() -> None:
    route = route_of(
        "[http://127.0.0.1:9001, http://127.0.0.1:9002]",
        "    traffic:\n"
        "      groups:\n"
        "        canary:\n"
        "          - {url: http://127.0.0.1:9003, weight: 1}\n"
        "          - {url: http://127.0.0.1:9004, weight: 3}\n"
        "          - {url: http://127.0.0.1:9003, weight: 50}\n"  # a repeat counts once
        "        blue: [http://127.0.0.1:9005]\n",
    )
    assert route.traffic is not None
    assert route.traffic.group_weights == ((1, 3, 50), None)
    traffic = RouteTraffic(route, route.traffic, None)
    assert type(traffic.groups["default"]) is Group
    assert type(traffic.groups["blue"]) is Group
    canary = traffic.groups["canary"]
    assert isinstance(canary, WeightedGroup)
    assert [m.upstream.port for m in canary.members] == [9003, 9004]
    counts = Counter(canary.order()[0].upstream.port for _ in range(400))
    assert counts == {9003: 100, 9004: 300}


def test_the_default_group_of_a_traffic_route_is_weighted_too() -> None:
    route = route_of(
        "[{url: http://127.0.0.1:9001, weight: 2}, http://127.0.0.1:9002]",
        "    traffic: {retries: {}}\n",
    )
    assert route.traffic is not None
    default = RouteTraffic(route, route.traffic, None).groups["default"]
    counts = Counter(default.order()[0].upstream.port for _ in range(300))
    assert counts == {9001: 200, 9002: 100}


def test_upstream_tls_applies_to_weighted_https_entries_in_both_places() -> None:
    route = route_of(
        "[{url: https://a.example, weight: 2}, http://127.0.0.1:9002]",
        "    upstream_tls: {server_name: internal.example}\n"
        "    traffic:\n"
        "      groups: {g: [{url: https://b.example:8443, weight: 5}, http://127.0.0.1:9003]}\n",
    )
    a, plain = route.upstreams
    assert a.tls is not None
    assert a.tls.server_name == "internal.example"
    assert plain.tls is None
    assert route.traffic is not None
    ((_, (b, other)),) = route.traffic.groups
    assert b.tls is a.tls  # the route's one setting, built once
    assert other.tls is None
    assert route.traffic.group_weights == ((5, 1),)
