"""A request as Cedar sees it: the principal and resource entities and the context record."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from tokenward.core.assurance import amr_of
from tokenward.core.claims import AccessToken
from tokenward.guard.authz.schema import READ_METHODS, WRITE_METHODS, Actions

NO_AUTH_TIME = 2**31 - 1  # auth_age when the token has no auth_time: never "fresh"
UNKNOWN_IP = "0.0.0.0"  # noqa: S104 - a value for Cedar, not a socket to bind
MAX_TAGS = 64
MAX_TAG_LENGTH = 1024
MAX_LIST = 64
# Claims given their own attributes (or not for policies: token plumbing).
_NOT_TAGS = frozenset({"roles", "groups", "tenant", "amr", "cnf", "aud", "scope", "scp"})

METHOD_ENTITIES: list[dict[str, Any]] = [
    {"uid": {"type": "Action", "id": group}, "attrs": {}, "parents": []}
    for group in ("read", "write")
] + [
    {
        "uid": {"type": "Action", "id": method},
        "attrs": {},
        "parents": [{"type": "Action", "id": "read" if method in READ_METHODS else "write"}],
    }
    for method in READ_METHODS + WRITE_METHODS
]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the edge knows of a request, beyond its token."""

    method: str
    route: str  # the route's name (gateway) or the app's name for it (middleware)
    path: str
    ip: str
    template: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    action: str | None = None  # the route's name for this method, if it gives one


def action_entities(actions: Actions) -> list[dict[str, Any]]:
    """The methods in their groups, and a route's named actions in their methods."""
    named = [
        {"uid": {"type": "Action", "id": name}, "attrs": {}, "parents": [_action(method)]}
        for name, method in actions
    ]
    return METHOD_ENTITIES + named


def _action(name: str) -> dict[str, str]:
    return {"type": "Action", "id": name}


def strings(value: Any) -> list[str]:
    """A claim as a list of strings: a JSON array of strings, or a space-separated string."""
    if isinstance(value, str):
        return value.split()[:MAX_LIST]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)][:MAX_LIST]
    return []


def principal_entity(token: AccessToken) -> dict[str, Any]:
    extra = token.extra
    tenant = extra.get("tenant")
    tags: dict[str, str] = {}
    for name, value in extra.items():
        if name in _NOT_TAGS or len(tags) >= MAX_TAGS:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            continue  # objects and lists other than roles/groups/amr are not exposed
        if len(text) <= MAX_TAG_LENGTH:
            tags[name] = text
    return {
        "uid": {"type": "Subject", "id": token.sub},
        "attrs": {
            "sub": token.sub,
            "client_id": token.client_id,
            "roles": strings(extra.get("roles")),
            "groups": strings(extra.get("groups")),
            "tenant": tenant if isinstance(tenant, str) else "",
        },
        "parents": [],
        "tags": tags,
    }


def resource_entity(facts: RequestFacts) -> dict[str, Any]:
    return {
        "uid": {"type": "Route", "id": facts.route},
        "attrs": {"name": facts.route, "path": facts.path, "template": facts.template},
        "parents": [],
        "tags": dict(facts.params),
    }


def sender(token: AccessToken) -> str:
    """How the token is bound to its sender: a DPoP key (RFC 9449), a TLS certificate (RFC
    8705), or not at all. A bound token reaches policy only after its proof was checked."""
    cnf = token.cnf or {}
    if "jkt" in cnf:
        return "dpop"
    if "x5t#S256" in cnf:
        return "mtls"
    return "none"


@lru_cache(maxsize=4096)  # addresses repeat; parsing one costs more than the rest of a request
def cedar_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return UNKNOWN_IP


def context(
    token: AccessToken,
    facts: RequestFacts,
    local: datetime,
    now: float,
    country: str | None,
    risk: int,
) -> dict[str, Any]:
    auth_time = token.auth_time
    return {
        "ip": {"__extn": {"fn": "ip", "arg": cedar_ip(facts.ip)}},
        "country": country or "",
        "hour": local.hour,
        "weekday": local.isoweekday(),
        "acr": token.acr or "",
        # As the token says; an opaque token of ours stores none: the one its acr implies.
        "amr": strings(token.extra.get("amr") or amr_of(token.acr)),
        "auth_age": NO_AUTH_TIME if auth_time is None else max(0, int(now) - auth_time),
        "sender": sender(token),
        "scopes": sorted(token.scopes),
        "risk": risk,
    }


def local_time(now: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(now, zone)
