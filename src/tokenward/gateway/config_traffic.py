"""`traffic:` on a route: canary rules, health checks, retries, circuit breaking, connection
limits (gateway/traffic_model.py holds the values; docs/gateway.md the grammar)."""

from __future__ import annotations

from collections.abc import Callable

from tokenward.gateway.model import Upstream
from tokenward.gateway.traffic_model import (
    ActiveHealth,
    BreakerSettings,
    CanaryRule,
    ConnectionLimits,
    PassiveHealth,
    Retries,
    TrafficPolicy,
)
from tokenward.gateway.weighted import weights_or_none
from tokenward.gateway.yamlnodes import Node

MAX_GROUPS = 32
MAX_GROUP_UPSTREAMS = 64
MAX_RULES = 64
MAX_RETRIES = 10
MAX_SECONDS = 3600.0
MAX_CONNECTIONS = 100_000
DEFAULT_GROUP = "default"  # the route's own `upstreams:`
# A URL, or a `{url:, weight:}` entry, read with the route's `upstream_tls` (gateway/config.py).
ParseUpstream = Callable[[Node], tuple[Upstream, int]]
Groups = tuple[tuple[str, tuple[Upstream, ...]], ...]

TRAFFIC_FIELDS = frozenset({"groups", "canary", "health", "retries", "breaker", "limits"})


def traffic(node: Node | None, parse_upstream: ParseUpstream) -> TrafficPolicy | None:
    if node is None or node.is_null():
        return None
    fields = node.mapping(TRAFFIC_FIELDS)
    groups, weights = _groups(fields.get("groups"), parse_upstream)
    health = (
        fields["health"].mapping(frozenset({"active", "passive"})) if "health" in fields else {}
    )
    return TrafficPolicy(
        groups=groups,
        group_weights=weights,
        canary=_canary(fields.get("canary"), {DEFAULT_GROUP, *(name for name, _ in groups)}),
        active=_active(health.get("active")),
        passive=_passive(health.get("passive")),
        retries=_retries(fields.get("retries")),
        breaker=_breaker(fields.get("breaker")),
        limits=_limits(fields.get("limits")),
    )


def _groups(
    node: Node | None, parse_upstream: ParseUpstream
) -> tuple[Groups, tuple[tuple[int, ...] | None, ...]]:
    if node is None:
        return (), ()
    groups = []
    weights = []
    for key, value in node.items():
        name = key.string()
        if name == DEFAULT_GROUP:
            raise key.error(f"{DEFAULT_GROUP!r} is the route's own upstreams: choose another name")
        items = value.listed()
        if not items or len(items) > MAX_GROUP_UPSTREAMS:
            raise value.error(f"needs 1 to {MAX_GROUP_UPSTREAMS} upstream URLs")
        entries = [parse_upstream(item) for item in items]
        groups.append((name, tuple(upstream for upstream, _ in entries)))
        weights.append(weights_or_none(tuple(weight for _, weight in entries)))
    if len(groups) > MAX_GROUPS:
        raise node.error(f"at most {MAX_GROUPS} groups")
    return tuple(groups), tuple(weights)


def _canary(node: Node | None, known: set[str]) -> tuple[CanaryRule, ...]:
    if node is None:
        return ()
    items = node.sequence()
    if len(items) > MAX_RULES:
        raise node.error(f"at most {MAX_RULES} rules")
    return tuple(_rule(item, known) for item in items)


def _rule(node: Node, known: set[str]) -> CanaryRule:
    fields = node.mapping(frozenset({"to", "header", "value", "subjects", "percent"}))
    if "to" not in fields:
        raise node.error("to: is required (a group name from traffic.groups)")
    to = fields["to"].string()
    if to not in known:
        raise fields["to"].error(f"no group named {to!r} (known: {', '.join(sorted(known))})")
    kinds = [name for name in ("header", "subjects", "percent") if name in fields]
    if len(kinds) != 1:
        raise node.error("give exactly one of header:, subjects: or percent:")
    if "value" in fields and kinds[0] != "header":
        raise fields["value"].error("value: goes with header:")
    if kinds[0] == "header":
        name = fields["header"].string().lower()
        if not name.replace("-", "").isalnum():
            raise fields["header"].error("must be a header name (letters, digits and -)")
        value = fields["value"].string().encode("latin-1") if "value" in fields else None
        return CanaryRule(to, header=name.encode("ascii"), value=value)
    share = _percent(fields[kinds[0]])
    if kinds[0] == "subjects":
        return CanaryRule(to, subjects=share)
    return CanaryRule(to, percent=share)


def _percent(node: Node) -> float:
    value = node.number()
    if value > 100:
        raise node.error("must be a percentage from 0 to 100")
    return value


def _seconds(node: Node, minimum: float) -> float:
    value = node.number(minimum=minimum)
    if value > MAX_SECONDS:
        raise node.error(f"at most {MAX_SECONDS:g} seconds")
    return value


def _count(node: Node, maximum: int, minimum: int = 1) -> int:
    value = node.integer(minimum=minimum)
    if value > maximum:
        raise node.error(f"at most {maximum}")
    return value


def _active(node: Node | None) -> ActiveHealth | None:
    if node is None:
        return None
    fields = node.mapping(
        frozenset({"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold"})
    )
    if "path" not in fields:
        raise node.error("path: is required (what each upstream answers health checks on)")
    path = fields["path"].string()
    if not path.startswith("/") or not path.isprintable() or " " in path:
        raise fields["path"].error("must be a path starting with / (no spaces)")
    interval = _seconds(fields["interval"], 0.05) if "interval" in fields else 5.0
    timeout = _seconds(fields["timeout"], 0.01) if "timeout" in fields else min(1.0, interval)
    if timeout > interval:
        raise fields.get("timeout", node).error("must not exceed interval")
    return ActiveHealth(
        path=path,
        interval=interval,
        timeout=timeout,
        healthy_threshold=_count(fields["healthy_threshold"], 100)
        if "healthy_threshold" in fields
        else 2,
        unhealthy_threshold=_count(fields["unhealthy_threshold"], 100)
        if "unhealthy_threshold" in fields
        else 3,
    )


def _passive(node: Node | None) -> PassiveHealth | None:
    if node is None:
        return None
    fields = node.mapping(frozenset({"failures", "cooloff"}))
    return PassiveHealth(
        failures=_count(fields["failures"], 100) if "failures" in fields else 1,
        cooloff=_seconds(fields["cooloff"], 0.01) if "cooloff" in fields else 10.0,
    )


def _retries(node: Node | None) -> Retries | None:
    if node is None:
        return None
    fields = node.mapping(frozenset({"attempts", "deadline", "statuses"}))
    statuses = frozenset({502, 503, 504})
    if "statuses" in fields:
        statuses = frozenset(_status(item) for item in fields["statuses"].listed())
    return Retries(
        attempts=_count(fields["attempts"], MAX_RETRIES) if "attempts" in fields else 1,
        deadline=_seconds(fields["deadline"], 0.01) if "deadline" in fields else 10.0,
        statuses=statuses,
    )


def _status(node: Node) -> int:
    value = node.integer()
    if not 400 <= value <= 599:
        raise node.error("must be an error status from 400 to 599")
    return value


def _breaker(node: Node | None) -> BreakerSettings | None:
    if node is None:
        return None
    fields = node.mapping(frozenset({"failures", "cooloff"}))
    return BreakerSettings(
        failures=_count(fields["failures"], 1000) if "failures" in fields else 5,
        cooloff=_seconds(fields["cooloff"], 0.01) if "cooloff" in fields else 30.0,
    )


def _limits(node: Node | None) -> ConnectionLimits | None:
    if node is None:
        return None
    fields = node.mapping(frozenset({"max_connections", "max_pending", "pending_timeout"}))
    if "max_connections" not in fields:
        raise node.error("max_connections: is required")
    return ConnectionLimits(
        max_connections=_count(fields["max_connections"], MAX_CONNECTIONS),
        max_pending=_count(fields["max_pending"], MAX_CONNECTIONS, minimum=0)
        if "max_pending" in fields
        else 0,
        pending_timeout=_seconds(fields["pending_timeout"], 0.001)
        if "pending_timeout" in fields
        else 1.0,
    )
