"""SCHEMA: what a route's `openapi:` check costs per request, on a typical JSON body.

The request: `POST /orders?dry_run=false` with a ~1 KB order (ten line items, a customer, an
address), checked as the gateway checks it (gateway/schema.py): operation lookup, query
parameters, JSON parse, depth limit, compiled JSON Schema 2020-12 validation with `$ref`s into
`components`. Timed in interleaved rounds against, in the same run: the parse alone
(`orjson.loads`, the floor) and the peer a route would otherwise hand-write per request,
`jsonschema.validate(body, schema)` (schema checked and validator built on every call).
The figure is µs per request on one core; the line says the machine's load average.
"""

from __future__ import annotations

import statistics
from typing import Any

# No stubs: types-jsonschema is not among the test dependencies in pyproject.toml.
import jsonschema  # type: ignore[import-untyped]
import orjson

from bench.harness import Figure, interleaved, load_note, median_ratio
from tokenward.gateway.schema import RouteSchema, SchemaLimits

ROUNDS = 7
BATCH = 2000
ITEM: dict[str, Any] = {
    "type": "object",
    "required": ["sku", "qty", "price"],
    "additionalProperties": False,
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
        "price": {"type": "number", "minimum": 0},
        "gift": {"type": "boolean"},
    },
}
ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["customer", "items", "ship_to"],
    "properties": {
        "customer": {"type": "string", "format": "email", "maxLength": 254},
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"$ref": "#/components/schemas/Item"},
        },
        "ship_to": {
            "type": "object",
            "required": ["street", "city", "country"],
            "properties": {
                "street": {"type": "string", "maxLength": 200},
                "city": {"type": "string", "maxLength": 100},
                "postcode": {"type": "string", "maxLength": 20},
                "country": {"type": "string", "enum": ["FR", "DE", "GB", "US", "ES", "IT"]},
            },
        },
        "note": {"type": ["string", "null"], "maxLength": 500},
    },
}
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "orders", "version": "1"},
    "paths": {
        "/orders": {
            "post": {
                "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
        "/orders/{id}": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Order": ORDER, "Item": ITEM}},
}
BODY = orjson.dumps(
    {
        "customer": "alice@example.com",
        "items": [
            {"sku": f"ABC-{1000 + n}", "qty": n + 1, "price": 9.99 + n, "gift": n % 2 == 0}
            for n in range(10)
        ],
        "ship_to": {
            "street": "1 rue de la Paix",
            "city": "Paris",
            "postcode": "75002",
            "country": "FR",
        },
        "note": "leave at the door",
    }
)
PEER_SCHEMA = {**ORDER, "$defs": {"Item": ITEM}}
PEER_SCHEMA["properties"] = {
    **ORDER["properties"],
    "items": {**ORDER["properties"]["items"], "items": {"$ref": "#/$defs/Item"}},
}


def run() -> list[Figure]:
    schema = RouteSchema(DOCUMENT, SchemaLimits(), "bench")
    headers = [(b"content-type", b"application/json")]

    def gateway() -> int:
        for _ in range(BATCH):
            operation, values = schema.operation("/orders", "POST")
            operation.check_parameters(values, b"dry_run=false", headers)
            operation.check_body(b"application/json", BODY, 32)
        return BATCH

    def parse() -> int:
        for _ in range(BATCH):
            orjson.loads(BODY)
        return BATCH

    def peer() -> int:
        for _ in range(BATCH // 10):
            jsonschema.validate(orjson.loads(BODY), PEER_SCHEMA)
        return BATCH // 10

    for check in (gateway, parse, peer):
        check()  # warm-up
    times = interleaved({"gateway": gateway, "parse": parse, "peer": peer}, ROUNDS)
    for name, values in times.items():
        print(f"  {name:>8}: {statistics.median(values) * 1e6:8.1f} µs per request")
    cost = statistics.median(times["gateway"])
    return [
        Figure(
            "SCHEMA",
            cost * 1e6,
            f"µs per request: openapi check of a {len(BODY)}-byte JSON order, one core",
            [
                f"jsonschema.validate {statistics.median(times['peer']) * 1e6:.0f} µs, "
                f"×{median_ratio(times['peer'], times['gateway']):.0f} slower",
                f"parse alone {statistics.median(times['parse']) * 1e6:.1f} µs",
                load_note(),
            ],
        )
    ]
