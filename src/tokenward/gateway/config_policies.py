"""`policies:` (global) and a route's `policies:`: Cedar files, path templates, time zone, GeoIP.

Policy files are read, parsed and validated against the schema here, at load and at every
reload, so a config whose policies are wrong is refused whole (the running one stays) with the
policy file's name and line (docs/policies.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokenward.gateway.model import TOKEN_MODES, PolicySettings, RoutePolicies
from tokenward.gateway.yamlnodes import Node
from tokenward.guard.authz.schema import ActionError, named_actions
from tokenward.guard.authz.source import PolicyError, PolicyFile, load_policy_set
from tokenward.guard.authz.templates import PathTemplates, TemplateError

MAX_TEMPLATES = 64


def settings(node: Node | None, base: Path) -> PolicySettings:
    if node is None:
        return PolicySettings()
    fields = node.mapping(frozenset({"files", "timezone", "geoip"}))
    zone = fields["timezone"].string() if "timezone" in fields else "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fields["timezone"].error(f"unknown time zone {zone!r}") from None
    geoip = None
    if "geoip" in fields:
        geoip = str(base / fields["geoip"].string())
        if not Path(geoip).is_file():
            raise fields["geoip"].error(f"no such file: {geoip}")
        if importlib.util.find_spec("maxminddb") is None:
            raise fields["geoip"].error(
                "needs the maxminddb package: pip install 'tokenward[geoip]'"
            )
    return PolicySettings(files=_files(fields.get("files"), base), timezone=zone, geoip=geoip)


def route_policies(
    node: Node | None, auth: str, route: Node, glob: PolicySettings, base: Path
) -> RoutePolicies | None:
    """The route's compiled policies (the global files first), or None when there are none."""
    files: tuple[PolicyFile, ...] = ()
    templates: tuple[str, ...] = ()
    actions: dict[str, str] = {}  # method -> the route's action name
    where = route
    if node is not None:
        fields = node.mapping(frozenset({"files", "paths", "actions"}))
        actions = _actions(fields.get("actions"))
        files = _files(fields.get("files"), base)
        templates = tuple(fields["paths"].strings()) if "paths" in fields else ()
        if len(templates) > MAX_TEMPLATES:
            raise fields["paths"].error(f"at most {MAX_TEMPLATES} path templates")
        where = node
    every = glob.files + files
    if not every or auth not in TOKEN_MODES:
        if files:
            raise where.error(
                "policies judge a token's claims: they need auth: bearer, dpop or bff"
            )
        return None
    try:
        compiled_templates = PathTemplates(templates)
        named = named_actions((name, method) for method, name in actions.items())
        policies = load_policy_set(every, named)
    except (TemplateError, ActionError) as exc:
        raise where.error(str(exc)) from None
    except PolicyError as exc:
        raise where.error("policies refused: " + "; ".join(exc.errors)) from None
    return RoutePolicies(policies, compiled_templates, tuple(item.name for item in every), actions)


def _actions(node: Node | None) -> dict[str, str]:
    """`actions: {POST: orders.create}`: the route's Cedar action for a method."""
    if node is None:
        return {}
    return {key.string().upper(): value.string() for key, value in node.items()}


def _files(node: Node | None, base: Path) -> tuple[PolicyFile, ...]:
    if node is None:
        return ()
    found = []
    for item in node.listed():
        path = base / item.string()
        try:
            found.append(PolicyFile(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise item.error(f"cannot read the policy file: {exc}") from None
    return tuple(found)
