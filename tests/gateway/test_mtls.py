"""Certificate-bound tokens (RFC 8705 §3) at a real `tokenward gateway`: client certificates on
its own TLS listener (`tls.client_certs`), or from a trusted front proxy's header
(`tls.client_cert_header`), which is never passed upstream.

The authorization server runs behind a stand-in front proxy (this test, from 127.0.0.1, a
trusted proxy there) so it can mint tokens bound to certificates generated here."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.docs.blocks import documented
from tests.e2e.live import free_port
from tests.e2e.mtls_setup import Served, serve
from tests.gateway.processes import RunningGateway, gateway_process
from tests.gateway.upstream_app import Upstream
from tests.gateway.ws_echo import Echo, echo_server
from tests.nginx_process import running_nginx
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


def _gateway(
    setup: Setup, name: str, tls: str, upstream: str, extra: str = "", route: str = ""
) -> Iterator[RunningGateway]:
    config = setup.tmp / f"{name}.yaml"
    config.write_text(
        f"""
listen: {{host: 127.0.0.1, port: 0}}
trust: {{issuer: "{setup.served.base}", audience: "{setup.served.base}/api"}}
trusted_proxies: [127.0.0.1/32]
audit: {{enabled: false}}
tls: {tls}
{extra}
routes:
  - {{name: api, prefix: /api, upstreams: ["{upstream}"], auth: bearer, scopes: [read]}}
{route}"""
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
def ws_listener(setup: Setup) -> Iterator[RunningGateway]:
    """The own TLS listener with a WebSocket route to an echo upstream."""
    server = setup.pki.issue("gw-ws", "localhost", ips=("127.0.0.1",), server=True)
    tls = (
        f'{{cert: "{server.cert_path}", key: "{server.key_path}", client_certs: optional, '
        f'client_ca: "{setup.pki.ca.cert_path}"}}'
    )
    with echo_server(Echo()) as port:
        echo = f"http://127.0.0.1:{port}"
        route = (
            f'  - {{name: ws, prefix: /ws, upstreams: ["{echo}"], auth: bearer, scopes: [read], '
            "websocket: true}\n"
        )
        yield from _gateway(setup, "ws-listener", tls, echo, route=route)


@pytest.fixture(scope="module")
def fronted(setup: Setup, upstream: Upstream) -> Iterator[RunningGateway]:
    tls = f"{{client_cert_header: {HEADER}}}"
    yield from _gateway(setup, "fronted", tls, f"http://127.0.0.1:{upstream.port}")


# External authorization (docs/edge.md): nginx's auth_request describing the client's request.
AUTHZ = "authz: {mode: nginx, path: /_authz, cache_seconds: 60}"
CHECK = {"x-original-method": "GET", "x-original-uri": "/api/x", "x-original-host": "api.example"}


@pytest.fixture(scope="module")
def authz_fronted(setup: Setup, upstream: Upstream) -> Iterator[RunningGateway]:
    """Plain HTTP; the client's certificate in the trusted proxy's header."""
    tls = f"{{client_cert_header: {HEADER}}}"
    yield from _gateway(setup, "authz-fronted", tls, f"http://127.0.0.1:{upstream.port}", AUTHZ)


@pytest.fixture(scope="module")
def authz_listener(setup: Setup, upstream: Upstream) -> Iterator[RunningGateway]:
    """The gateway's own TLS listener asks its peers for certificates too: the proxy's
    connection may carry one (here: the very certificate the bound token is bound to)."""
    server = setup.pki.issue("gw-authz", "localhost", ips=("127.0.0.1",), server=True)
    tls = (
        f'{{cert: "{server.cert_path}", key: "{server.key_path}", client_certs: optional, '
        f'client_ca: "{setup.pki.ca.cert_path}", client_cert_header: {HEADER}}}'
    )
    yield from _gateway(setup, "authz-tls", tls, f"http://127.0.0.1:{upstream.port}", AUTHZ)


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


def test_a_websocket_upgrade_enforces_the_binding(
    setup: Setup, ws_listener: RunningGateway
) -> None:
    url = ws_listener.base.replace("https://", "wss://") + "/ws/room"
    headers = {"authorization": f"Bearer {setup.bound}"}

    def context(cert: Issued | None) -> ssl.SSLContext:
        made = ssl.create_default_context(cafile=str(setup.pki.ca.cert_path))
        if cert is not None:
            made.load_cert_chain(*cert.files)
        return made

    with ws_connect(url, additional_headers=headers, ssl=context(setup.svc)) as ws:
        ws.send("bound")
        assert ws.recv(timeout=10) == "bound"
    for cert in (setup.other, None):
        with pytest.raises(InvalidStatus) as caught:
            ws_connect(url, additional_headers=headers, ssl=context(cert))
        assert caught.value.response.status_code == 401


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


def _check(client: httpx.Client, base: str, token: str, **headers: str) -> httpx.Response:
    return client.get(
        base + "/_authz", headers={**CHECK, "authorization": f"Bearer {token}", **headers}
    )


def test_authz_takes_the_certificate_only_from_the_trusted_proxys_header(
    setup: Setup, authz_fronted: RunningGateway
) -> None:
    """A bound token is allowed only with its certificate in the configured header, from a
    trusted proxy; without it, or with another, the check refuses (fail closed)."""
    header = {HEADER: quote(setup.svc.pem, safe="")}
    with httpx.Client(timeout=10) as proxy:  # 127.0.0.1: the trusted proxy
        allowed = _check(proxy, authz_fronted.base, setup.bound, **header)
        assert allowed.status_code == 200, allowed.text
        # The proxy's cache key holds no certificate: a bound decision is never cacheable.
        assert allowed.headers["cache-control"] == "no-store"
        bare = _check(proxy, authz_fronted.base, setup.bound)
        assert bare.status_code == 401
        assert 'error="invalid_token"' in bare.headers["www-authenticate"]
        wrong = {HEADER: quote(setup.other.pem, safe="")}
        assert _check(proxy, authz_fronted.base, setup.bound, **wrong).status_code == 401
        garbled = {HEADER: "not a certificate"}
        assert _check(proxy, authz_fronted.base, setup.bound, **garbled).status_code == 401
        unbound = _check(proxy, authz_fronted.base, setup.unbound)
        assert unbound.status_code == 200
        assert unbound.headers["cache-control"].startswith("max-age=")
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(timeout=10, transport=untrusted) as stranger:
        refused = _check(stranger, authz_fronted.base, setup.bound, **header)
        assert refused.status_code == 403  # authz_untrusted: no decision, no certificate


def test_authz_never_takes_the_proxys_own_connection_certificate(
    setup: Setup, authz_listener: RunningGateway
) -> None:
    """The check's connection is the proxy's: its certificate says nothing about the client,
    even when it is the very one the token is bound to."""
    assert authz_listener.base.startswith("https://")
    with _tls_client(setup, setup.svc) as proxy:
        assert _check(proxy, authz_listener.base, setup.bound).status_code == 401
        assert _check(proxy, authz_listener.base, setup.unbound).status_code == 200
        header = {HEADER: quote(setup.svc.pem, safe="")}
        assert _check(proxy, authz_listener.base, setup.bound, **header).status_code == 200
        garbled = {HEADER: "not a certificate"}
        assert _check(proxy, authz_listener.base, setup.bound, **garbled).status_code == 401
        # Proxied through the gateway itself: a trusted proxy's malformed header leaves the
        # request with no certificate, not with the proxy's connection certificate.
        url = authz_listener.base + "/api/x"
        assert _status(proxy, url, setup.bound, **garbled) == 401
        assert _status(proxy, url, setup.bound) == 200  # no header: the connection's own


# A real nginx terminating the clients' TLS (asking for certificates chaining to the test CA)
# and asking the gateway with docs/edge.md's check location.
NGINX_SERVER = """
server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {base}/server.pem;
    ssl_certificate_key {base}/server.key;
    ssl_verify_client optional;
    ssl_client_certificate {base}/clients-ca.pem;
    location / {{
        auth_request /_authz;
        proxy_pass http://127.0.0.1:{upstream};
        proxy_set_header Authorization "";
    }}
{check}
}}
"""


def test_bound_tokens_through_nginx_auth_request(
    setup: Setup, authz_fronted: RunningGateway, upstream: Upstream
) -> None:
    """docs/edge.md's check location under a real nginx: the bound token passes with its
    certificate, and is refused without one, with another, or with a certificate header the
    client wrote itself (nginx replaces it with what the TLS connection carried: nothing)."""
    check = documented("docs/edge.md", "nginx", "location = /_authz {").text
    gateway = authz_fronted.base.removeprefix("http://")
    assert "127.0.0.1:8080" in check
    assert HEADER in check
    check = check.replace("127.0.0.1:8080", gateway)
    server = setup.pki.issue("nginx", "localhost", ips=("127.0.0.1",), server=True)
    # nginx runs as nobody when the suite is root: a directory of its own outside pytest's
    # (mode 0700) tree, removed at the end.
    tmp_path = Path(tempfile.mkdtemp(prefix="tw-gateway-mtls-nginx-"))
    for source, name in (
        (server.cert_path, "server.pem"),
        (server.key_path, "server.key"),
        (setup.pki.ca.cert_path, "clients-ca.pem"),
    ):
        (tmp_path / name).write_bytes(source.read_bytes())
    port = free_port()
    config = NGINX_SERVER.format(port=port, base=tmp_path, upstream=upstream.port, check=check)
    origin = f"https://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp_path, ignore_errors=True)
        stack.enter_context(running_nginx(tmp_path, config, port))
        with _tls_client(setup, setup.svc) as http:
            assert _status(http, origin + "/api/x", setup.bound) == 200
            assert _status(http, origin + "/api/x", setup.unbound) == 200
        with _tls_client(setup, setup.other) as http:
            assert _status(http, origin + "/api/x", setup.bound) == 401
        smuggled = {HEADER: quote(setup.svc.pem, safe="")}
        with _tls_client(setup, None) as http:
            assert _status(http, origin + "/api/x", setup.bound) == 401
            assert _status(http, origin + "/api/x", setup.bound, **smuggled) == 401
            assert _status(http, origin + "/api/x", setup.unbound) == 200
