"""A gateway configuration with an OpenAPI document, and a server whose developer portal
publishes it: what the portal's tests share (tests/server, tests/e2e)."""

from __future__ import annotations

from pathlib import Path

GATEWAY_YAML = """\
trust:
  issuer: {issuer}
  audience: https://api.example
routes:
  - name: orders
    prefix: /api/orders
    strip_prefix: true
    upstreams: [http://127.0.0.1:9000]
    auth: bearer
    scopes: [orders:read, orders:write]
    audience: https://api.example/orders
    openapi:
      document: orders.yaml
  - name: status
    prefix: /status
    methods: [GET]
    upstreams: [http://127.0.0.1:9001]
    auth: none
"""

ORDERS_YAML = """\
openapi: 3.1.0
info:
  title: Orders
  version: "1.2"
  description: "Orders of the <b>shop</b>"
paths:
  /orders:
    get:
      summary: List orders
      parameters:
        - {name: limit, in: query, schema: {type: integer, maximum: 100}}
    post:
      summary: Place an order <script>alert(1)</script>
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
  /orders/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      summary: One order
components:
  schemas:
    Order:
      type: object
      required: [item, qty]
      properties:
        item: {type: string}
        qty: {type: integer, minimum: 1}
"""


def write_gateway(directory: Path, issuer: str = "https://as.example") -> Path:
    """The gateway's config and its OpenAPI document in `directory`; the config's path."""
    (directory / "orders.yaml").write_text(ORDERS_YAML, encoding="utf-8")
    config = directory / "gateway.yaml"
    config.write_text(GATEWAY_YAML.format(issuer=issuer), encoding="utf-8")
    return config
