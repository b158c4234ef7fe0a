"""A route's `openapi:`: its OpenAPI 3.1 document and the limits its requests are read with.

The document is read and every schema in it compiled here, at load and at every reload, so a
route whose document is wrong is refused with the config's line and the document's pointer.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tokenward.gateway.schema import RouteSchema, SchemaDocumentError, SchemaLimits
from tokenward.gateway.yamlnodes import Node

FIELDS = frozenset({"document", "max_body_bytes", "max_depth", "responses"})
MAX_DOCUMENT_BYTES = 4 << 20


def route_schema(node: Node | None, base: Path) -> RouteSchema | None:
    if node is None:
        return None
    fields = node.mapping(FIELDS)
    if "document" not in fields:
        raise node.error("document: is required (an OpenAPI 3.1 file, YAML or JSON)")
    path = base / fields["document"].string()
    limits = SchemaLimits(
        max_body_bytes=fields["max_body_bytes"].integer(minimum=1)
        if "max_body_bytes" in fields
        else SchemaLimits.max_body_bytes,
        max_depth=fields["max_depth"].integer(minimum=1)
        if "max_depth" in fields
        else SchemaLimits.max_depth,
        responses=fields["responses"].choice(("off", "report")) if "responses" in fields else "off",
    )
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise fields["document"].error(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise fields["document"].error(f"cannot read the document: {exc}") from None
    if not isinstance(document, dict):
        raise fields["document"].error("is not an OpenAPI document (a mapping)")
    try:
        return RouteSchema(document, limits, str(path))
    except SchemaDocumentError as exc:
        raise fields["document"].error(f"{path.name}: {exc}") from None
    except (KeyError, TypeError, AttributeError, LookupError) as exc:
        raise fields["document"].error(f"{path.name}: malformed ({type(exc).__name__})") from None
