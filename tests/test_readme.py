"""The README's ten-line example runs as printed and answers as the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_the_readme_admin_commands_run_as_written_on_a_fresh_data_dir(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    [commands] = [block for block in blocks if "tokenward keys rotate" in block]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    done = subprocess.run(
        ["/bin/sh", "-e", "-c", commands],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"revoked"' in done.stdout
