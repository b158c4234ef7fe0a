"""Interop: requests-oauth2client, a third-party DPoP-capable Python client, against our server.

It discovers the server, answers our token endpoint's nonce challenge, and gets a DPoP-bound
token whose `cnf.jkt` is its own key's thumbprint. Skipped when it is not installed locally;
a failure in CI, which must have it (test extras).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.client.conftest import AuthServer
from tests.conftest import IN_CI
from tokenward.tokens.jws import parse_compact, payload_object

roc: ModuleType | None
try:
    import requests
    import requests_oauth2client
except ImportError:  # pragma: no cover - depends on the environment
    roc = None
else:
    roc = requests_oauth2client


@pytest.fixture
def oauth2client() -> Any:
    if roc is None:
        message = "requests-oauth2client is not installed (pip install requests-oauth2client)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return roc


def dpop_client(lib: Any, server: AuthServer) -> Any:
    return lib.OAuth2Client.from_discovery_endpoint(
        issuer=server.issuer,
        auth=lib.ClientSecretBasic("service", server.service_secret),
        dpop_bound_access_tokens=True,
        testing=True,  # our test server is plain http on loopback; the library wants https
    )


def test_it_obtains_a_dpop_token(oauth2client: Any, auth_server: AuthServer) -> None:
    client = dpop_client(oauth2client, auth_server)
    token = client.client_credentials(scope="read")
    assert isinstance(token, oauth2client.DPoPToken)
    assert token.token_type == "DPoP"
    claims = payload_object(parse_compact(token.access_token))
    assert claims["cnf"] == {"jkt": token.dpop_key.private_key.thumbprint()}
    assert claims["scope"] == "read"


def test_it_uses_the_dpop_token(oauth2client: Any, auth_server: AuthServer) -> None:
    client = dpop_client(oauth2client, auth_server)
    token = client.client_credentials(scope="read")
    response = requests.get(f"{auth_server.base}/api/hello", auth=token, timeout=10)
    assert response.status_code == 200, response.headers.get("www-authenticate")
    assert response.json()["client_id"] == "service"
