"""The README's ten-line example runs as printed and answers as the README says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.anyio
async def test_protect_an_api_example() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(block for block in blocks if "require_scopes" in block)
    assert len(example.strip().splitlines()) <= 12
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as http:
        missing = await http.get("/orders")
        malformed = await http.get("/orders", headers={"authorization": "Bearer not-a-jwt"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="tokenward"'
    assert malformed.status_code == 401
    assert 'error="invalid_token"' in malformed.headers["www-authenticate"]
