"""The developer portal's API catalogue (docs/portal.md): plain values built by the composition
root from the gateway's routes and each route's OpenAPI document, so the server shows what the
gateway enforces without importing the gateway.

An OpenAPI document is read here only for display: each operation's path, method, summary,
parameters and request body schemas. Local `$ref`s are followed (bounded); nothing is fetched.
Everything is bounded in count and size, since the pages render it whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_OPERATIONS = 500  # per API
MAX_PARAMETERS = 64  # per operation
MAX_SCHEMA_TEXT = 16 * 1024  # characters of one rendered schema
MAX_TEXT = 2000  # a summary or description
MAX_REF_HOPS = 16


@dataclass(frozen=True, slots=True)
class ApiParameter:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    schema: str  # the schema as indented JSON text ("" when none)
    description: str = ""


@dataclass(frozen=True, slots=True)
class ApiBody:
    media_type: str
    schema: str  # indented JSON text


@dataclass(frozen=True, slots=True)
class ApiOperation:
    method: str  # upper case
    path: str  # as the API's clients call it: the route's prefix, then the document's path
    summary: str
    description: str
    parameters: tuple[ApiParameter, ...]
    bodies: tuple[ApiBody, ...]
    body_required: bool


@dataclass(frozen=True, slots=True)
class CatalogueApi:
    """One gateway route: where it is, what a token needs there, and its operations."""

    name: str
    prefix: str
    methods: tuple[str, ...]  # empty: every method
    scopes: tuple[str, ...]
    audience: str | None
    auth: str
    title: str = ""
    version: str = ""
    description: str = ""
    operations: tuple[ApiOperation, ...] = ()
    documented: bool = False  # the route names an OpenAPI document


@dataclass(frozen=True, slots=True)
class Catalogue:
    apis: tuple[CatalogueApi, ...] = ()

    def named(self, name: str) -> CatalogueApi | None:
        return next((api for api in self.apis if api.name == name), None)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(scope for api in self.apis for scope in api.scopes)


def catalogue_api(
    *,
    name: str,
    prefix: str,
    methods: Iterable[str] | None,
    scopes: Iterable[str],
    audience: str | None,
    auth: str,
    strip_prefix: bool,
    document: Mapping[str, Any] | None,
) -> CatalogueApi:
    """A route as the portal shows it. With `strip_prefix` the document describes the
    upstream's paths, so the route's prefix goes in front of each (what clients call)."""
    base = CatalogueApi(
        name=name,
        prefix=prefix,
        methods=tuple(sorted(methods or ())),
        scopes=tuple(sorted(scopes)),
        audience=audience,
        auth=auth,
    )
    if document is None:
        return base
    info = document.get("info")
    info = info if isinstance(info, Mapping) else {}
    return CatalogueApi(
        name=base.name,
        prefix=base.prefix,
        methods=base.methods,
        scopes=base.scopes,
        audience=base.audience,
        auth=base.auth,
        title=_text(info.get("title")),
        version=_text(info.get("version")),
        description=_text(info.get("description")),
        operations=_operations(document, prefix.rstrip("/") if strip_prefix else ""),
        documented=True,
    )


def _operations(document: Mapping[str, Any], prefix: str) -> tuple[ApiOperation, ...]:
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return ()
    found: list[ApiOperation] = []
    for template, raw in paths.items():
        item = _deref(document, raw)
        if not isinstance(item, Mapping):
            continue
        shared = _parameters(document, item.get("parameters"))
        for method in METHODS:
            operation = _deref(document, item.get(method))
            if not isinstance(operation, Mapping):
                continue
            if len(found) >= MAX_OPERATIONS:
                return tuple(found)
            found.append(_operation(document, str(template), method, operation, shared, prefix))
    return tuple(found)


def _operation(
    document: Mapping[str, Any],
    template: str,
    method: str,
    operation: Mapping[str, Any],
    shared: tuple[ApiParameter, ...],
    prefix: str,
) -> ApiOperation:
    own = _parameters(document, operation.get("parameters"))
    names = {(p.name, p.location) for p in own}  # an operation's own override the path's
    parameters = tuple(p for p in shared if (p.name, p.location) not in names) + own
    body = _deref(document, operation.get("requestBody"))
    bodies: list[ApiBody] = []
    required = False
    if isinstance(body, Mapping):
        required = body.get("required") is True
        content = body.get("content")
        if isinstance(content, Mapping):
            for media, entry in list(content.items())[:MAX_PARAMETERS]:
                schema = entry.get("schema") if isinstance(entry, Mapping) else None
                bodies.append(ApiBody(str(media)[:200], _schema_text(document, schema)))
    return ApiOperation(
        method=method.upper(),
        path=(prefix + template)[:MAX_TEXT],
        summary=_text(operation.get("summary")),
        description=_text(operation.get("description")),
        parameters=parameters[:MAX_PARAMETERS],
        bodies=tuple(bodies),
        body_required=required,
    )


def _parameters(document: Mapping[str, Any], raw: object) -> tuple[ApiParameter, ...]:
    if not isinstance(raw, list):
        return ()
    found = []
    for entry in raw[:MAX_PARAMETERS]:
        parameter = _deref(document, entry)
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            continue
        location = _text(parameter.get("in"))
        found.append(
            ApiParameter(
                name=parameter["name"][:200],
                location=location,
                required=parameter.get("required") is True or location == "path",
                schema=_schema_text(document, parameter.get("schema")),
                description=_text(parameter.get("description")),
            )
        )
    return tuple(found)


def _deref(document: Mapping[str, Any], node: object) -> object:
    """The node, or what its local `$ref` names (others are left as they are)."""
    for _ in range(MAX_REF_HOPS):
        if not isinstance(node, Mapping) or not isinstance(node.get("$ref"), str):
            return node
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: object = document
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and key in target:
                target = target[key]
            else:
                return node
        node = target
    return node


def _schema_text(document: Mapping[str, Any], schema: object) -> str:
    """The schema as indented JSON, a top-level `$ref` followed (nested ones stay named, so a
    recursive schema renders finitely), cut at MAX_SCHEMA_TEXT."""
    if schema is None:
        return ""
    resolved = _deref(document, schema)
    try:
        text = json.dumps(resolved, indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return ""
    return text if len(text) <= MAX_SCHEMA_TEXT else text[:MAX_SCHEMA_TEXT] + "\n…"


def _text(value: object) -> str:
    return str(value)[:MAX_TEXT] if isinstance(value, str | int | float) else ""
