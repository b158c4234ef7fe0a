"""Interop: panva's openid-client for Node (OpenID-certified and strict) against our server.

It validates discovery, the `iss` authorization response parameter (RFC 9207), state, PKCE, the
ID token, userinfo's subject, refresh rotation, introspection and revocation by its own rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CALLBACK, PASSWORD, Live
from tests.server.flows import hidden_interaction

NODE_DIR = Path(__file__).parent / "node"


def _node_ready() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        message = (
            "the openid-client interop test needs Node.js and npm (apt-get install nodejs npm)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if not (NODE_DIR / "node_modules" / "openid-client").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=240,
        )


def _browser_callback(live: Live, url: str) -> str:
    with httpx.Client() as browser:
        page = browser.get(url)
        done = browser.post(
            f"{live.base}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "alice",
                "password": PASSWORD,
            },
        )
        if done.status_code == 200:
            done = browser.post(
                f"{live.base}/consent",
                data={"interaction": hidden_interaction(done.text), "decision": "approve"},
            )
        assert done.status_code == 302, done.text[:300]
        return done.headers["location"]


def test_openid_client_full_life(live: Live) -> None:
    _node_ready()
    with subprocess.Popen(
        [
            "node",
            str(NODE_DIR / "interop.mjs"),
            live.base,
            "web",
            live.web_secret,
            CALLBACK,
            "service",
            live.service_secret,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert "authorize" in first, first
        process.stdin.write(_browser_callback(live, first["authorize"]) + "\n")
        process.stdin.flush()
        outcome = json.loads(process.stdout.readline())
        process.stdin.close()
        process.wait(timeout=30)
    assert "result" in outcome, outcome
    result = outcome["result"]
    user = asyncio.run(live.services.stores.users.by_username("alice"))
    assert user is not None
    assert result == {
        "client_credentials_type": "bearer",
        "sub": user.user_id,
        "sid": result["sid"],
        "userinfo_username": "alice",
        "rotated": True,
        "introspection_active": True,
        "after_revocation_active": False,
    }
    assert result["sid"]
