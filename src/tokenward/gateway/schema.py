"""Request schemas from a route's OpenAPI 3.1 document, checked before the upstream is asked.

Built once per load (`RouteSchema.load`): every operation's parameters and JSON request body
get a compiled JSON Schema 2020-12 validator (OpenAPI 3.1's dialect; `jsonschema-rs`, about
400 times faster than the pure-Python `jsonschema` here: bench/p_schema.py), with the document
registered so `$ref`s into `components` resolve. Per request: the operation for the
path and method (404 `schema_no_path`, 405 `schema_no_method`), then path, query and header
parameters, then the body, read whole up to `max_body_bytes` (413) and at most `max_depth`
levels deep. A failure is 400 `schema_invalid` with the RFC 6901 pointer of what failed
(`/query/limit`, `/body/items/0/qty`). Responses can be checked too, in report mode only: a
mismatch is logged, the answer is never changed.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import jsonschema_rs
import orjson
import structlog
from starlette.types import Message, Receive, Send

from tokenward.gateway.policy import Denied

log = structlog.get_logger(__name__)
URI = "urn:tokenward:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_QUERY_FIELDS = 256
MAX_MESSAGE = 200  # characters of a validator's message given back


class SchemaDocumentError(ValueError):
    """The document cannot be used: not OpenAPI 3.1, or a schema in it is invalid."""


@dataclass(frozen=True)
class SchemaLimits:
    max_body_bytes: int = 1 << 20
    max_depth: int = 32
    responses: str = "off"  # off | report


def _escape(part: object) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(*parts: object) -> str:
    return "".join("/" + _escape(part) for part in parts)


def _invalid(where: str, message: str) -> Denied:
    return Denied(
        400,
        "schema_invalid",
        message[:MAX_MESSAGE],
        error="invalid_request",
        details={"pointer": where},
    )


class _Param:
    __slots__ = ("kind", "location", "name", "required", "validator")

    def __init__(self, name: str, location: str, required: bool, kind: str, validator: Any) -> None:
        self.name = name
        self.location = location
        self.required = required
        self.kind = kind  # the schema's type, for reading strings as numbers and booleans
        self.validator = validator


class Operation:
    __slots__ = ("body", "body_required", "params", "responses")

    def __init__(
        self,
        params: list[_Param],
        body: dict[str, Any | None] | None,
        body_required: bool,
        responses: dict[str, Any],
    ) -> None:
        self.params = params
        self.body = body  # media type -> validator (None: accepted unchecked); None: no body
        self.body_required = body_required
        self.responses = responses  # status ("200", "2XX", "default") -> JSON validator

    def check_parameters(
        self, values: Mapping[str, str], query: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        try:
            pairs = parse_qsl(
                query.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_QUERY_FIELDS,
                errors="strict",
            )
        except (UnicodeDecodeError, ValueError):
            raise _invalid(
                "/query", "the query string is not UTF-8 or has too many fields"
            ) from None
        queried: dict[str, list[str]] = {}
        for name, value in pairs:
            queried.setdefault(name, []).append(value)
        sent: dict[str, list[str]] = {}
        for field, raw in headers:
            sent.setdefault(field.decode("latin-1"), []).append(raw.decode("latin-1"))
        for param in self.params:
            if param.location == "path":
                found = [values[param.name]] if param.name in values else []
            elif param.location == "query":
                found = queried.get(param.name, [])
            else:
                found = sent.get(param.name.lower(), [])
            where = pointer(param.location, param.name)
            if not found:
                if param.required:
                    raise _invalid(where, f"the {param.location} parameter is required")
                continue
            _check(param.validator, _read(param.kind, found), where)

    def check_body(self, content_type: bytes | None, body: bytes, max_depth: int) -> None:
        if self.body is None:
            if body:
                raise _invalid("/body", "this operation takes no request body")
            return
        if not body:
            if self.body_required:
                raise _invalid("/body", "a request body is required")
            return
        media = (content_type or b"").split(b";", 1)[0].strip().lower().decode("latin-1")
        if media not in self.body:
            raise Denied(
                415,
                "schema_media_type",
                f"the body must be one of: {', '.join(sorted(self.body))}",
                error="invalid_request",
                details={"pointer": "/header/content-type"},
            )
        validator = self.body[media]
        if validator is None:
            return
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _invalid("/body", "the body is not JSON") from None
        if isinstance(document, dict | list) and _too_deep(body, document, max_depth):
            raise _invalid("/body", f"the body nests deeper than {max_depth} levels")
        _check(validator, document, "/body")

    def response_validator(self, status: int) -> Any | None:
        code = str(status)
        return (
            self.responses.get(code)
            or self.responses.get(code[0] + "XX")
            or self.responses.get("default")
        )


def _first_error(validator: Any, value: object) -> Any | None:
    """None when `value` is valid, else the failure deepest in it (the most precise pointer)."""
    if validator.is_valid(value):
        return None
    errors = list(itertools.islice(validator.iter_errors(value), 16))
    return max(errors, key=lambda error: len(error.instance_path), default=None)


def _check(validator: Any, value: object, where: str) -> None:
    error = _first_error(validator, value)
    if error is not None:
        raise _invalid(where + pointer(*error.instance_path), error.message)


def _read(kind: str, found: list[str]) -> object:
    if kind == "array":
        return [_scalar("string", value) for value in found]
    return _scalar(kind, found[0])


_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def _scalar(kind: str, value: str) -> object:
    """A parameter's string read as its schema's type; left a string where it is not one, so
    the validator reports the type error with the parameter's pointer."""
    if kind == "integer" and _INTEGER.fullmatch(value):
        return int(value)
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _too_deep(body: bytes, document: Any, limit: int) -> bool:
    """Does the JSON nest deeper than `limit`? A body with no more brackets than that cannot
    (counted in C, the common case); otherwise the parsed value is walked, containers only."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    level, frontier = 0, [document]
    while frontier:
        level += 1
        if level > limit:
            return True
        below: list[Any] = []
        for item in frontier:
            children = item.values() if isinstance(item, dict) else item
            below.extend(child for child in children if isinstance(child, dict | list))
        frontier = below
    return False


class RouteSchema:
    """A route's operations; `operation` finds one for an upstream path and method."""

    def __init__(self, document: dict[str, Any], limits: SchemaLimits, source: str) -> None:
        self.limits = limits
        self.source = source
        version = str(document.get("openapi", ""))
        if not version.startswith("3.1"):
            raise SchemaDocumentError(f"openapi: must be 3.1.x (got {version or 'nothing'!r})")
        paths = document.get("paths")
        if not isinstance(paths, dict):
            raise SchemaDocumentError("paths: must be a mapping")
        self._document = document
        try:
            self._registry = jsonschema_rs.Registry(
                [(URI, document)], draft=jsonschema_rs.Draft202012
            )
        except (jsonschema_rs.ReferencingError, ValueError) as exc:
            raise SchemaDocumentError(str(exc)) from None
        components = document.get("components", {})
        names = components.get("schemas", {}) if isinstance(components, dict) else {}
        for name in names:  # each one valid, at load, named by its own pointer
            self._meta(pointer("components", "schemas", name))
        self._exact: dict[str, dict[str, Operation]] = {}
        self._templated: list[tuple[re.Pattern[str], list[str], dict[str, Operation]]] = []
        for template, item in paths.items():
            operations = self._path_item(str(template), self._deref(item))
            names = re.findall(r"\{([^}/]+)\}", str(template))
            if not names:
                self._exact[str(template)] = operations
                continue
            regex = "".join(
                "([^/]+)" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}/]+\})", str(template))
                if part
            )
            self._templated.append((re.compile(regex), names, operations))
        # More literal text first: `/orders/export` before `/orders/{id}`.
        self._templated.sort(key=lambda entry: -len(re.sub(r"\(\[\^/\]\+\)", "", entry[0].pattern)))

    @property
    def document(self) -> dict[str, Any]:
        """The OpenAPI document as loaded (read-only by convention): the portal renders it."""
        return self._document

    def _lookup(self, at: str) -> Any:
        """The node at JSON pointer `at` in the document."""
        node: Any = self._document
        for part in at.split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def _deref(self, node: Any) -> Any:
        """A node, or what its local `$ref` names (references outside the document are not
        followed: the gateway fetches nothing)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 16:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaDocumentError(f"only local references are followed: {ref!r}")
            node = self._lookup(ref[1:])
            seen += 1
        return node

    def _meta(self, at: str) -> None:
        """The schema at `at` checked against the 2020-12 meta-schema."""
        try:
            jsonschema_rs.meta.validate(self._lookup(at))
        except jsonschema_rs.ValidationError as exc:
            raise SchemaDocumentError(f"{at}: {exc.message}") from None

    def _validator(self, at: str) -> Any:
        """A validator for the schema at JSON pointer `at`: refs inside it resolve in the
        document. The schema itself is checked against the 2020-12 meta-schema first."""
        self._meta(at)
        try:
            return jsonschema_rs.Draft202012Validator(
                {"$ref": f"{URI}#{quote(at, safe='/~')}"},
                registry=self._registry,
                validate_formats=False,
            )
        except jsonschema_rs.ValidationError as exc:
            raise SchemaDocumentError(f"{at}: {exc.message}") from None
        except (jsonschema_rs.ReferencingError, ValueError) as exc:
            raise SchemaDocumentError(f"{at}: {exc}") from None

    def _path_item(self, template: str, item: dict[str, Any]) -> dict[str, Operation]:
        base = pointer("paths", template)
        shared = item.get("parameters", [])
        operations = {}
        for method in HTTP_METHODS:
            if method in item:
                at = f"{base}/{method}"
                operations[method.upper()] = self._operation(at, item[method], shared, base)
        return operations

    def _operation(
        self, at: str, operation: dict[str, Any], shared: list[Any], base: str
    ) -> Operation:
        params: dict[tuple[str, str], _Param] = {}
        for where, items in ((base, shared), (at, operation.get("parameters", []))):
            for index, raw in enumerate(items):
                param = self._deref(raw)
                location = param.get("in")
                if location not in ("path", "query", "header") or "schema" not in param:
                    continue  # cookie parameters and content-typed ones are not checked
                ref = raw.get("$ref") if isinstance(raw, dict) else None
                schema_at = (
                    ref.removeprefix("#") + "/schema"
                    if isinstance(ref, str) and ref.startswith("#")
                    else f"{where}/parameters/{index}/schema"
                )
                kind = self._deref(param["schema"]).get("type", "string")
                name = str(param["name"])
                required = bool(param.get("required", location == "path"))
                validator = self._validator(schema_at)
                params[(location, name)] = _Param(name, location, required, str(kind), validator)
        body = None
        required = False
        if "requestBody" in operation:
            request_body = self._deref(operation["requestBody"])
            body_at = self._pointer_of(operation["requestBody"], f"{at}/requestBody")
            required = bool(request_body.get("required", False))
            body = {}
            for media, content in request_body.get("content", {}).items():
                json_like = media == "application/json" or media.endswith("+json")
                checked = json_like and "schema" in content
                body[media.lower()] = (
                    self._validator(f"{body_at}/content/{_escape(media)}/schema")
                    if checked
                    else None
                )
        responses = {}
        for status, raw in operation.get("responses", {}).items():
            response = self._deref(raw)
            content = response.get("content", {}).get("application/json")
            if content is not None and "schema" in content:
                response_at = self._pointer_of(raw, f"{at}/responses/{_escape(status)}")
                responses[str(status).upper() if "X" in str(status).upper() else str(status)] = (
                    self._validator(f"{response_at}/content/application~1json/schema")
                )
        return Operation(list(params.values()), body, required, responses)

    @staticmethod
    def _pointer_of(node: Any, default: str) -> str:
        ref = node.get("$ref") if isinstance(node, dict) else None
        return ref.removeprefix("#") if isinstance(ref, str) and ref.startswith("#") else default

    def operation(self, path: str, method: str) -> tuple[Operation, dict[str, str]]:
        """The operation and its path parameters; Denied 404/405 when the document has none."""
        operations = self._exact.get(path)
        values: dict[str, str] = {}
        if operations is None:
            for regex, names, candidates in self._templated:
                match = regex.fullmatch(path)
                if match is not None:
                    operations, values = candidates, dict(zip(names, match.groups(), strict=True))
                    break
        if operations is None:
            raise Denied(404, "schema_no_path", "the API document has no such path")
        operation = operations.get(method)
        if operation is None:
            raise Denied(405, "schema_no_method", "the API document has no such operation")
        return operation, values


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole request body, refused (413) past `limit` bytes, declared or received."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            break  # the client left: the proxy will notice on its own read
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(limit: int) -> Denied:
    return Denied(413, "schema_body_too_large", f"the body is larger than {limit} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives `body` once, then whatever the client sends next (a disconnect)."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def api_path(path: str, prefix: str, strip: bool) -> str:
    """The path the document describes: the upstream's, so without a stripped prefix."""
    if not strip:
        return path
    rest = path[len(prefix.rstrip("/")) :]
    return rest if rest.startswith("/") else "/" + rest


def reporting(send: Send, operation: Operation, route: str, limit: int) -> Send:
    """`send`, unchanged for the client, that checks a JSON answer against the operation's
    response schema once it is complete and logs a mismatch (report-only)."""
    state: dict[str, Any] = {"validator": None, "chunks": [], "size": 0}

    async def checked(message: Message) -> None:
        await send(message)
        kind = message["type"]
        if kind == "http.response.start":
            headers = dict(message.get("headers", []))
            media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            json_like = media == b"application/json" or media.endswith(b"+json")
            state["status"] = message["status"]
            state["validator"] = (
                operation.response_validator(message["status"]) if json_like else None
            )
        elif kind == "http.response.body" and state["validator"] is not None:
            chunk = message.get("body", b"")
            state["size"] += len(chunk)
            if state["size"] > limit:
                state["validator"] = None  # too big to hold: not checked
                return
            state["chunks"].append(chunk)
            if not message.get("more_body", False):
                _report(state["validator"], b"".join(state["chunks"]), route, state["status"])

    return checked


def _report(validator: Any, body: bytes, route: str, status: int) -> None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        log.warning("schema_response_mismatch", route=route, status=status, pointer="/body")
        return
    error = _first_error(validator, document)
    if error is not None:
        # The pointer only, never the message: it quotes the value, maybe personal data.
        where = "/body" + pointer(*error.instance_path)
        log.warning("schema_response_mismatch", route=route, status=status, pointer=where)
