"""TLS and mTLS to upstreams (`https://` upstreams, `upstream_tls:`), with certificates made
here (tests/pki.py): a private CA trusted by the route, a wrong one refused with 502, a client
certificate presented to an upstream that requires one, the configured SNI name, and the
one-line refusals at load for files that are missing or not what they should be."""

from __future__ import annotations

import os
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import ROOT, blocks
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, serve
from tests.gateway.processes import refused
from tests.gateway.upstream_app import Upstream
from tests.pki import Issued, Pki
from tokenward.gateway.config import ConfigError, parse_config
from tokenward.gateway.upstream import Pool

ROUTE = """
routes:
  - name: tls
    prefix: /tls
    upstreams: [{url}]
    auth: none
{tls}
"""


def _config(url: str, **tls: str) -> str:
    block = "".join(f"      {name}: {value}\n" for name, value in tls.items())
    text = ROUTE.replace("{url}", url).replace(
        "{tls}", "    upstream_tls:\n" + block if tls else ""
    )
    return text.replace("{", "{{").replace("}", "}}")  # the factory formats the text


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("upstream-pki"))


@pytest.fixture(scope="module")
def server_cert(pki: Pki) -> Issued:
    return pki.server()


@contextmanager
def tls_upstream(cert: Issued, client_ca: Path | None = None) -> Iterator[str]:
    """The test upstream over HTTPS (requiring a client certificate from `client_ca`)."""
    options: dict[str, Any] = {"ssl_certfile": cert.files[0], "ssl_keyfile": cert.files[1]}
    if client_ca is not None:
        options |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    with serve(Upstream(), **options) as base:
        yield base.replace("http://", "https://")


def test_a_private_ca_is_trusted_when_configured(
    gateway: GatewayFactory, pki: Pki, server_cert: Issued
) -> None:
    with tls_upstream(server_cert) as url:
        running = gateway(_config(url, ca=str(pki.ca.cert_path)))
        response = running.http.get("/tls/x")
        assert response.status_code == 200, response.text
        assert response.json()["path"] == "/tls/x"
        assert running.http.get("/tls/y").status_code == 200  # on the pooled TLS connection


def test_a_certificate_from_another_ca_is_a_502_saying_why(
    gateway: GatewayFactory, server_cert: Issued, tmp_path: Path
) -> None:
    other = Pki(tmp_path / "other", "another CA")
    with tls_upstream(server_cert) as url:
        for config in (_config(url, ca=str(other.ca.cert_path)), _config(url)):  # system trust
            running = gateway(config)
            response = running.http.get("/tls/x")
            assert response.status_code == 502
            description = response.json()["error_description"]
            assert "certificate did not verify" in description, description
            assert running.last_audit()["reason"] == "upstream_tls"


def test_an_upstream_requiring_a_client_certificate_takes_the_configured_one(
    gateway: GatewayFactory, pki: Pki, server_cert: Issued
) -> None:
    client = pki.issue("gateway-client", "gateway")
    with tls_upstream(server_cert, client_ca=pki.ca.cert_path) as url:
        with_cert = gateway(
            _config(url, ca=str(pki.ca.cert_path), cert=client.files[0], key=client.files[1])
        )
        assert with_cert.http.get("/tls/x").status_code == 200
        without = gateway(_config(url, ca=str(pki.ca.cert_path)))
        response = without.http.get("/tls/x")
        assert response.status_code == 502
        assert without.last_audit()["reason"] == "upstream_tls"
        assert "certificate" in response.json()["error_description"]


class _SniServer(socketserver.ThreadingTCPServer):
    """A bare HTTPS server recording the SNI name of each handshake."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, cert: Issued) -> None:
        self.names: list[str | None] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*cert.files)
        self.context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)
        super().__init__(("127.0.0.1", port), _Answer)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True), address


class _Answer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


def test_the_configured_server_name_is_sent_and_checked(gateway: GatewayFactory, pki: Pki) -> None:
    named = pki.issue("named", "upstream.internal", dns=("upstream.internal",), server=True)
    port = free_port()
    server = _SniServer(port, named)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{port}"
        ca = str(pki.ca.cert_path)
        running = gateway(_config(url, ca=ca, server_name="upstream.internal"))
        response = running.http.get("/tls/x")
        assert response.status_code == 200, response.text
        assert server.names == ["upstream.internal"]
        # Without it the URL's host (an IP: no SNI) is checked, and the certificate lacks it.
        plain = gateway(_config(url, ca=ca))
        refused = plain.http.get("/tls/x")
        assert refused.status_code == 502
        assert "IP address mismatch" in refused.json()["error_description"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_connections_are_pooled_per_tls_setting(pki: Pki, tmp_path: Path) -> None:
    text = f"""
routes:
  - {{name: a, prefix: /a, upstreams: ["https://127.0.0.1:8443"], auth: none,
      upstream_tls: {{ca: "{pki.ca.cert_path}"}}}}
  - {{name: b, prefix: /b, upstreams: ["https://127.0.0.1:8443"], auth: none,
      upstream_tls: {{ca: "{pki.ca.cert_path}", server_name: upstream.internal}}}}
  - {{name: c, prefix: /c, upstreams: ["https://127.0.0.1:8443"], auth: none,
      upstream_tls: {{ca: "{pki.ca.cert_path}"}}}}
"""
    a, b, c = (route.upstreams[0] for route in parse_config(text).routes)
    assert a.tls is c.tls  # one context per distinct setting within a load
    assert a.tls is not b.tls
    assert parse_config(text).routes[0].upstreams[0].tls is not a.tls  # a reload reads anew
    pool = Pool()
    keys = {(up.host, up.port, up.tls) for up in (a, b, c)}
    assert len(keys) == 2
    assert pool._idle == {}


@pytest.mark.parametrize(
    ("tls", "field", "message"),
    [
        ({"ca": "missing.pem"}, "upstream_tls.ca", "cannot read"),
        ({"ca": "garbage.pem"}, "upstream_tls.ca", "is not a PEM bundle of CA certificates"),
        ({"cert": "client.pem"}, "upstream_tls", "cert: and key: go together"),
        ({"cert": "client.pem", "key": "missing.key"}, "upstream_tls.cert", "cannot read"),
        ({"cert": "garbage.pem", "key": "client.key"}, "upstream_tls.cert", "is not a PEM"),
        ({"server_name": "not a name"}, "upstream_tls.server_name", "DNS host name"),
    ],
)
def test_unusable_settings_are_refused_at_load_naming_the_setting(
    tmp_path: Path, pki: Pki, tls: dict[str, str], field: str, message: str
) -> None:
    client = pki.issue("client", "gateway")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "client.pem").write_bytes(client.cert_path.read_bytes())
    (tmp_path / "client.key").write_bytes(client.key_path.read_bytes())
    block = ", ".join(f"{name}: {value!r}" for name, value in tls.items())
    text = f"""
routes:
  - {{name: r, prefix: /r, upstreams: ["https://127.0.0.1:8443"], auth: none,
      upstream_tls: {{{block}}}}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, str(tmp_path / "gateway.yaml"))  # paths are relative to the file
    error = caught.value
    assert error.field == f"routes[0].{field}", str(error)
    assert message in error.message
    assert "\n" not in str(error)


def test_upstream_tls_needs_an_https_upstream() -> None:
    text = """
routes:
  - {name: r, prefix: /r, upstreams: ["http://127.0.0.1:8000"], auth: none,
     upstream_tls: {server_name: upstream.internal}}
"""
    with pytest.raises(ConfigError, match="applies to https:// upstreams"):
        parse_config(text)


def test_documented_config_loads(tmp_path: Path, pki: Pki) -> None:
    block = next(
        block
        for block in blocks(ROOT / "docs" / "gateway.md")
        if block.covered_by == "tests/gateway/test_upstream_tls.py::test_documented_config_loads"
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    client = pki.issue("documented-client", "gateway")
    (certs / "internal-ca.pem").write_bytes(pki.ca.cert_path.read_bytes())
    (certs / "gateway-client.pem").write_bytes(client.cert_path.read_bytes())
    (certs / "gateway-client.key").write_bytes(client.key_path.read_bytes())
    config = tmp_path / "gateway.yaml"
    trust = "trust: {issuer: https://auth.example.com, audience: https://api.example.com}\n"
    config.write_text(trust + block.text)
    upstream = parse_config(config.read_text(), str(config)).routes[0].upstreams[0]
    assert upstream.tls is not None
    assert upstream.tls.server_name == "ledger.internal"
    assert upstream.port == 8443


def test_the_gateway_process_refuses_a_missing_ca_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        """
listen: {host: 127.0.0.1, port: 0}
routes:
  - {name: r, prefix: /r, upstreams: ["https://127.0.0.1:8443"], auth: none,
     upstream_tls: {ca: certs/missing.pem}}
"""
    )
    status, stderr = refused(config, dict(os.environ))
    assert status == 2
    assert stderr.splitlines() == [
        f"tokenward gateway: {config}:5: routes[0].upstream_tls.ca: "
        f"cannot read {tmp_path / 'certs' / 'missing.pem'}"
    ]
