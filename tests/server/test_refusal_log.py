"""Every refused OAuth request logs one line with its reason, and never a credential."""

from __future__ import annotations

import base64
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.server.conftest import Server
from tests.server.flows import REDIRECT_URI, Pkce, authorize_params

pytestmark = pytest.mark.anyio
SECRET = "wrong-secret-Zq8xY2"
CODE = "code-value-Hn3kP9aa"
REFRESH = "refresh-value-Tt7mW1bb"
ASSERTION = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzZXJ2aWNlIn0.assertion-sig-Kk4"
ACCESS = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.access-sig-Pp5rr"
DEVICE_SECRET = "device-secret-Vv6"


def refusals(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "oauth_refused"]


async def test_refusals_are_logged_with_reason_and_without_secrets(server: Server) -> None:
    http = server.http
    with capture_logs() as logs:
        await http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("service", SECRET)
        )
        await http.post(
            "/token",
            data={"grant_type": "authorization_code", "code": CODE, "redirect_uri": REDIRECT_URI},
            auth=("web", server.web_secret),
        )
        await http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": REFRESH},
            auth=("web", server.web_secret),
        )
        await http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": ASSERTION,
            },
        )
        await http.post("/introspect", data={"token": ACCESS}, auth=("service", SECRET))
        await http.post(
            "/revoke",
            data={"token": ACCESS, "token_type_hint": "id_token"},
            auth=("service", server.secret),
        )
        await http.post(
            "/device_authorization",
            data={"client_id": "nobody", "client_secret": DEVICE_SECRET},
        )
        await http.get("/authorize", params=authorize_params(Pkce.new(), client_id="ghost"))
        await http.get("/authorize", params=authorize_params(Pkce.new(), scope="openid admin"))
        await http.get("/userinfo", headers={"authorization": "Bearer " + ACCESS})
        await http.get("/userinfo")

    lines = refusals(logs)
    seen = {(line["endpoint"], line["error"], line["client_id"]) for line in lines}
    assert seen == {
        ("/token", "invalid_client", "service"),
        ("/token", "invalid_grant", "web"),
        ("/token", "invalid_client", "service"),  # the assertion's (unverified) sub
        ("/introspect", "invalid_client", "service"),
        ("/revoke", "unsupported_token_type", "service"),
        ("/device_authorization", "invalid_client", "nobody"),
        ("/authorize", "invalid_request", "ghost"),
        ("/authorize", "invalid_scope", "web"),
        ("/userinfo", "invalid_token", None),
        ("/userinfo", "missing_token", None),
    }
    assert len(lines) == 11  # one line per refused request
    for line in lines:
        assert line["error_description"]
        assert line["client_ip"] == "127.0.0.1"
    text = json.dumps(logs, default=str)
    for secret in (SECRET, CODE, REFRESH, ASSERTION, "assertion-sig", ACCESS, "access-sig"):
        assert secret not in text
    assert DEVICE_SECRET not in text
    assert server.secret not in text
    assert server.web_secret not in text
    assert base64.b64encode(f"service:{SECRET}".encode()).decode() not in text


async def test_successful_requests_log_no_refusal(server: Server) -> None:
    with capture_logs() as logs:
        assert (await server.token()).status_code == 200
    assert refusals(logs) == []
