"""The one Cedar schema every policy is validated against at load (docs/policies.md lists it).

Principals are `Subject`s (a token's subject with its verified claims: any other string-valued
claim is a tag), resources are `Route`s (path parameters from the route's templates are tags),
actions are the HTTP methods in two groups, `read` and `write`. A route may name its own
actions (`orders.create` for POST): each is declared in the method it stands for, so
`action in Action::"POST"` and `action in Action::"write"` still hold for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import cedarpy

READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
METHODS = frozenset(READ_METHODS + WRITE_METHODS)

SCHEMA = """
type RequestContext = {
  ip: ipaddr,
  country: String,
  hour: Long,
  weekday: Long,
  acr: String,
  amr: Set<String>,
  auth_age: Long,
  sender: String,
  scopes: Set<String>,
  risk: Long,
};
entity Subject = {
  sub: String,
  client_id: String,
  roles: Set<String>,
  groups: Set<String>,
  tenant: String,
} tags String;
entity Route = {
  name: String,
  path: String,
  template: String,
} tags String;
action read, write;
action "GET", "HEAD", "OPTIONS" in [read]
  appliesTo { principal: [Subject], resource: [Route], context: RequestContext };
action "POST", "PUT", "PATCH", "DELETE" in [write]
  appliesTo { principal: [Subject], resource: [Route], context: RequestContext };
"""

ACTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
RESERVED = METHODS | {"read", "write"}
Actions = tuple[tuple[str, str], ...]  # (action name, the method it stands for), sorted


class ActionError(ValueError):
    pass


def named_actions(pairs: Iterable[tuple[str, str]]) -> Actions:
    """Checked (name, method) pairs; a name may stand for one method only."""
    found: dict[str, str] = {}
    for name, method in pairs:
        if not ACTION_NAME.fullmatch(name) or name in RESERVED:
            raise ActionError(f"action name {name!r}: letters, digits, _ . : - and not a method")
        if method not in METHODS:
            raise ActionError(f"action {name!r}: {method} is not a method policies know")
        if found.setdefault(name, method) != method:
            raise ActionError(f"action {name!r} stands for two methods")
    return tuple(sorted(found.items()))


@lru_cache(maxsize=64)
def schema_for(actions: Actions) -> cedarpy.Schema:
    """The schema with a route's named actions declared (parsed once per distinct set)."""
    declared = "".join(
        f'action "{name}" in ["{method}"]\n'
        "  appliesTo { principal: [Subject], resource: [Route], context: RequestContext };\n"
        for name, method in actions
    )
    return cedarpy.Schema.from_str(SCHEMA + declared)
