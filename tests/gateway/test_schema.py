"""Request schemas from a route's OpenAPI 3.1 document (gateway/schema.py), through a real
gateway in front of a real upstream: refused requests never reach it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, blocks
from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.upstream_app import Upstream
from tokenward.gateway.config import ConfigError, parse_config

Mint = Callable[..., str]
DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "orders", "version": "1"},
    "paths": {
        "/orders": {
            "get": {
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}
                ],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                    },
                },
                "responses": {"201": {"description": "created"}},
            },
        },
        "/orders/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {"responses": {"200": {"description": "ok"}}},
        },
        "/orders/export": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {
        "schemas": {
            "Order": {
                "type": "object",
                "required": ["items"],
                "additionalProperties": False,
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "note": {"type": ["string", "null"]},
                },
            },
            "Item": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                    "qty": {"type": "integer", "minimum": 1},
                },
            },
        }
    },
}
CONFIG = """
trust:
  issuer: {issuer}
  audience: {audience}
routes:
  - name: orders
    prefix: /api
    strip_prefix: true
    upstreams: [{upstream}]
    auth: bearer
    scopes: [read]
    openapi:
      document: DOCUMENT
      max_body_bytes: 2048
      max_depth: 6
      responses: report
"""


@pytest.fixture
def running(gateway: GatewayFactory, tmp_path: Path) -> Running:
    document = tmp_path / "orders.json"
    document.write_text(json.dumps(DOCUMENT))
    return gateway(CONFIG.replace("DOCUMENT", str(document)))


def test_valid_requests_pass_unchanged(running: Running, upstream: Upstream, mint: Mint) -> None:
    auth = {"authorization": f"Bearer {mint()}"}
    order = {"items": [{"sku": "ABC-1", "qty": 2}], "note": None}
    sent = json.dumps(order).encode()
    created = running.http.post(
        "/api/orders", content=sent, headers={**auth, "content-type": "application/json"}
    )
    assert created.status_code == 200, created.text
    assert created.json()["path"] == "/orders"
    assert created.json()["sha256"] == hashlib.sha256(sent).hexdigest()  # replayed as sent
    assert running.http.get("/api/orders?limit=5", headers=auth).status_code == 200
    assert running.http.get("/api/orders/42", headers=auth).status_code == 200
    assert running.http.get("/api/orders/export", headers=auth).status_code == 200


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "pointer"),
    [
        ("POST", "/api/orders", {"items": [{"sku": "ABC-1", "qty": 0}]}, 400, "/body/items/0/qty"),
        ("POST", "/api/orders", {"items": [{"sku": "abc", "qty": 1}]}, 400, "/body/items/0/sku"),
        ("POST", "/api/orders", {"items": [], "extra": 1}, 400, "/body"),
        ("POST", "/api/orders", None, 400, "/body"),
        ("GET", "/api/orders?limit=500", None, 400, "/query/limit"),
        ("GET", "/api/orders?limit=ten", None, 400, "/query/limit"),
        ("GET", "/api/orders/x1", None, 400, "/path/id"),
        ("GET", "/api/customers", None, 404, None),
        ("DELETE", "/api/orders", None, 405, None),
    ],
)
def test_invalid_requests_are_refused_with_the_pointer(
    running: Running,
    upstream: Upstream,
    mint: Mint,
    method: str,
    target: str,
    body: object,
    status: int,
    pointer: str | None,
) -> None:
    before = upstream.requests
    answer = running.http.request(
        method, target, json=body, headers={"authorization": f"Bearer {mint()}"}
    )
    assert answer.status_code == status, answer.text
    if pointer is not None:
        assert answer.json()["pointer"] == pointer
        assert answer.json()["error"] == "invalid_request"
    assert upstream.requests == before


def test_body_limits(running: Running, upstream: Upstream, mint: Mint) -> None:
    auth = {"authorization": f"Bearer {mint()}", "content-type": "application/json"}
    before = upstream.requests
    big = json.dumps({"items": [{"sku": "ABC-1", "qty": 1}] * 200})
    assert running.http.post("/api/orders", content=big, headers=auth).status_code == 413
    deep = '{"items": [], "note": ' + "[" * 10 + "]" * 10 + "}"
    refused = running.http.post("/api/orders", content=deep, headers=auth)
    assert (refused.status_code, refused.json()["pointer"]) == (400, "/body")
    assert "deeper" in refused.json()["error_description"]
    text = {**auth, "content-type": "text/plain"}
    assert running.http.post("/api/orders", content=b"x", headers=text).status_code == 415
    assert upstream.requests == before


def test_a_document_that_is_not_31_is_refused(tmp_path: Path) -> None:
    document = tmp_path / "old.json"
    document.write_text(json.dumps({**DOCUMENT, "openapi": "3.0.3"}))
    text = CONFIG.replace("DOCUMENT", str(document)).format(
        issuer="https://i", audience="https://a", upstream="http://127.0.0.1:9"
    )
    with pytest.raises(ConfigError, match=r"must be 3\.1"):
        parse_config(text)
    broken = tmp_path / "broken.json"
    bad = json.loads(json.dumps(DOCUMENT))
    bad["components"]["schemas"]["Item"]["type"] = "integer-ish"
    broken.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="Item"):
        parse_config(text.replace(str(document), str(broken)))


def test_documented_config_loads(tmp_path: Path) -> None:

    block = next(
        block
        for block in blocks(ROOT / "docs" / "gateway.md")
        if block.covered_by == "tests/gateway/test_schema.py::test_documented_config_loads"
    )
    (tmp_path / "orders.yaml").write_text(json.dumps(DOCUMENT))  # JSON is YAML
    config = tmp_path / "gateway.yaml"
    trust = "trust: {issuer: https://auth.example.com, audience: https://api.example.com}\n"
    config.write_text(trust + block.text)
    loaded = parse_config(config.read_text(), str(config))
    schema = loaded.routes[0].schema
    assert schema is not None
    assert schema.limits.responses == "report"
    assert schema.operation("/orders/7", "GET")[1] == {"id": "7"}
