"""Certificate-bound tokens (RFC 8705 §3) at a real `tokenward gateway`: client certificates on
its own TLS listener (`tls.client_certs`), or from a trusted front proxy's header
(`tls.client_cert_header`), which is never passed upstream.

The authorization server runs behind a stand-in front proxy (this test, from 127.0.0.1, a
trusted proxy there) so it can mint tokens bound to certificates generated here."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.mtls_setup import Served, serve
from tests.gateway.conftest import Upstream
from tests.gateway.processes import RunningGateway, gateway_process
from tests.pki import Issued, Pki

HEADER = "X-SSL-Client-Cert"
BOUND_CLIENT = ("--grant-type", "client_credentials", "--scope", "read")


@dataclass
class Setup:
    tmp: Path
    served: Served
    pki: Pki
    svc: Issued
    other: Issued
    bound: str  # an access token bound to svc's certificate
    unbound: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("gateway-mtls")
    pki = Pki(tmp / "pki")
    svc = pki.issue("svc", "svc", dns=("svc.example",))
    other = pki.issue("other", "other", dns=("other.example",))
    env = {"TOKENWARD_TRUSTED_PROXIES": "127.0.0.1/32", "TOKENWARD_MTLS_CERTIFICATE_HEADER": HEADER}
    with serve(tmp, env=env) as served:
        served.cli("client", "create", "--client-id", "svc", *BOUND_CLIENT,
                   "--auth-method", "tls_client_auth", "--tls-san-dns", "svc.example")  # fmt: skip
        secret = served.cli("client", "create", "--client-id", "plain", *BOUND_CLIENT)
        with served.http() as http:
            bound = http.post(
                "/token",
                data={"grant_type": "client_credentials", "client_id": "svc"},
                headers={HEADER: quote(svc.pem, safe="")},
            ).json()["access_token"]
            unbound = http.post(
                "/token",
                data={"grant_type": "client_credentials"},
                auth=("plain", secret["client_secret"]),
            ).json()["access_token"]
        gateway_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
        yield Setup(tmp, served, pki, svc, other, bound, unbound, gateway_env)


def _gateway(setup: Setup, name: str, tls: str, upstream: str) -> Iterator[RunningGateway]:
    config = setup.tmp / f"{name}.yaml"
    config.write_text(
        f"""
listen: {{host: 127.0.0.1, port: 0}}
trust: {{issuer: "{setup.served.base}", audience: "{setup.served.base}/api"}}
trusted_proxies: [127.0.0.1/32]
audit: {{enabled: false}}
tls: {tls}
routes:
  - {{name: api, prefix: /api, upstreams: ["{upstream}"], auth: bearer, scopes: [read]}}
"""
    )
    with gateway_process(config, setup.env) as running:
        yield running


@pytest.fixture(scope="module")
def listener(setup: Setup, upstream: Upstream) -> Iterator[RunningGateway]:
    server = setup.pki.issue("gw", "localhost", ips=("127.0.0.1",), server=True)
    tls = (
        f'{{cert: "{server.cert_path}", key: "{server.key_path}", client_certs: optional, '
        f'client_ca: "{setup.pki.ca.cert_path}"}}'
    )
    yield from _gateway(setup, "listener", tls, f"http://127.0.0.1:{upstream.port}")


@pytest.fixture(scope="module")
def fronted(setup: Setup, upstream: Upstream) -> Iterator[RunningGateway]:
    tls = f"{{client_cert_header: {HEADER}}}"
    yield from _gateway(setup, "fronted", tls, f"http://127.0.0.1:{upstream.port}")


def _tls_client(setup: Setup, cert: Issued | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(setup.pki.ca.cert_path))
    if cert is not None:
        context.load_cert_chain(*cert.files)
    return httpx.Client(verify=context, timeout=10)


def _status(client: httpx.Client, url: str, token: str, **headers: str) -> int:
    response = client.get(url, headers={"authorization": f"Bearer {token}", **headers})
    if response.status_code == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    return response.status_code


def test_own_listener_enforces_the_binding(setup: Setup, listener: RunningGateway) -> None:
    url = listener.base + "/api/x"
    assert url.startswith("https://")
    with _tls_client(setup, setup.svc) as http:
        assert _status(http, url, setup.bound) == 200
        assert _status(http, url, setup.bound) == 200  # cached: compared again
        assert _status(http, url, setup.unbound) == 200  # a certificate does not hurt
    with _tls_client(setup, setup.other) as http:
        assert _status(http, url, setup.bound) == 401
    with _tls_client(setup, None) as http:
        assert _status(http, url, setup.bound) == 401
        assert _status(http, url, setup.unbound) == 200


def test_front_proxy_header_only_from_a_trusted_proxy(
    setup: Setup, fronted: RunningGateway, upstream: Upstream
) -> None:
    url = fronted.base + "/api/x"
    header = {HEADER: quote(setup.svc.pem, safe="")}
    with httpx.Client(timeout=10) as http:  # from 127.0.0.1: the trusted front proxy
        response = http.get(url, headers={"authorization": f"Bearer {setup.bound}", **header})
        assert response.status_code == 200
        forwarded = {name.lower() for name in response.json()["headers"]}
        assert HEADER.lower() not in forwarded  # the certificate header stops here
        assert _status(http, url, setup.bound) == 401  # no header: no certificate
        wrong = {HEADER: quote(setup.other.pem, safe="")}
        assert _status(http, url, setup.bound, **wrong) == 401
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(timeout=10, transport=untrusted) as http:
        assert _status(http, url, setup.bound, **header) == 401
