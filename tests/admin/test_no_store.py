"""Responses that carry a new client secret are never stored by a cache or the browser:
`Cache-Control: no-store` and `Pragma: no-cache`. The places are found, not listed by hand:
every admin API operation whose response schema has `client_secret`, and every console page
(the console shows a new secret on the page an action returns); and beyond them every answer
of the admin API and the console, so a secret added to any of them later is covered too."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.admin.conftest import Console
from tests.admin.test_api import admin_token
from tests.monitor.serving import Monitored
from tokenward.server.routes.admin import SECTION_OPS

pytestmark = pytest.mark.anyio

# How to call each operation that hands out a secret (a new one must be added here).
SECRET_CALLS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/admin/api/clients"): {
        "json": {"client_id": "made", "grant_types": ["client_credentials"], "scope": "read"}
    },
    ("post", "/admin/api/clients/{client_id}/rotate-secret"): {"client_id": "service"},
}


def no_store(headers: Any) -> bool:
    return bool(headers.get("cache-control") == "no-store" and headers.get("pragma") == "no-cache")


def _has_secret(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> bool:
    if depth > 8:
        return False
    if "$ref" in schema:
        return _has_secret(components[schema["$ref"].rsplit("/", 1)[1]], components, depth + 1)
    if "client_secret" in schema.get("properties", {}):
        return True
    nested = [schema.get("items", {}), *schema.get("anyOf", []), *schema.get("allOf", [])]
    return any(_has_secret(part, components, depth + 1) for part in nested if part)


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")  # /userinfo GET+POST (not ours)
async def test_every_api_operation_with_a_secret_is_no_store(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    schema = (await http.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    found = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for answer in operation.get("responses", {}).values()
        for content in answer.get("content", {}).values()
        if _has_secret(content.get("schema", {}), components)
    }
    assert found == set(SECRET_CALLS), "a new operation hands out client secrets: add it here"
    for (method, path), call in SECRET_CALLS.items():
        url = path.format(client_id=call.get("client_id", ""))
        response = await http.request(method, url, json=call.get("json"), headers=auth)
        assert response.is_success, response.text
        assert response.json()["client_secret"]
        assert no_store(response.headers), (path, dict(response.headers))


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
async def test_every_admin_api_answer_is_no_store(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    schema = (await http.get("/openapi.json")).json()
    calls = 0
    for path, operations in schema["paths"].items():
        if not path.startswith("/admin/api/"):
            continue
        url = re.sub(r"\{[^}]+\}", "nothing", path)
        for method in operations:
            body: dict[str, object] | None = {} if method in ("post", "put", "patch") else None
            response = await http.request(method, url, json=body, headers=auth)
            assert response.status_code < 500, (method, path, response.text)
            assert no_store(response.headers), (method, path, response.status_code)
            calls += 1
    assert calls >= 20


async def test_console_pages_that_show_a_secret_are_no_store(
    server: Monitored, console: Console
) -> None:
    await console.get("/admin/clients")
    created = await console.http.post(
        "/admin/clients",
        data={
            "csrf": console.csrf,
            "op": "create",
            "client_id": "reports",
            "grant_types": ["client_credentials"],
            "scope": "read",
        },
        headers={"origin": "https://as.example"},
    )
    rotated = await console.post("/admin/clients", op="rotate", client_id="reports")
    for response in (created, rotated):
        assert 'id="new-secret"' in response.text
        assert no_store(response.headers)


async def test_every_console_answer_is_no_store(server: Monitored, console: Console) -> None:
    """Pages, every operation's answer (good or refused), sign-in and sign-out."""
    for section, ops in SECTION_OPS.items():
        assert no_store((await console.get(f"/admin/{section}")).headers), section
        for op in ops:
            answer = await console.post(f"/admin/{section}", op=op, client_id="nothing")
            assert no_store(answer.headers), (section, op, answer.status_code)
    assert no_store((await console.get("/admin/dashboard")).headers)
    assert no_store((await console.http.get("/admin/usage.json")).headers)
    assert no_store((await console.http.get("/admin/nowhere")).headers)
    signed_out = await console.post("/admin/logout")
    assert no_store(signed_out.headers)
    assert no_store((await console.get("/admin/login")).headers)
