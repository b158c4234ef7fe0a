"""TLS serving, HSTS only over HTTPS, and require_tls (with a trusted TLS-terminating proxy)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway.conftest import GatewayFactory

HSTS = "max-age=31536000; includeSubDomains"
CONFIG = """
tls: {{hsts: "max-age=31536000; includeSubDomains", require_tls: REQUIRE}}
TRUSTED
routes:
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none}}
"""


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _config(require: bool, trusted: bool = False) -> str:
    return CONFIG.replace("REQUIRE", "true" if require else "false").replace(
        "TRUSTED", "trusted_proxies: [127.0.0.1/32]" if trusted else ""
    )


def test_https_answers_carry_hsts_and_the_upstream_learns_the_scheme(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    running = gateway(
        _config(require=True), server={"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    )
    base = running.base.replace("http://", "https://")
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
        response = client.get(f"{base}/open/x")
        assert response.status_code == 200
        assert response.headers["strict-transport-security"] == HSTS
        assert response.json()["headers"]["x-forwarded-proto"] == ["https"]
        missing = client.get(f"{base}/nowhere")
        assert missing.headers["strict-transport-security"] == HSTS


def test_require_tls_refuses_plain_http_without_hsts(gateway: GatewayFactory) -> None:
    running = gateway(_config(require=True))
    response = running.http.get("/open/x")
    assert response.status_code == 403
    assert response.json()["error"] == "tls_required"
    assert "strict-transport-security" not in response.headers  # RFC 6797 §7.2


def test_trusted_tls_terminating_proxy_counts_as_https(gateway: GatewayFactory) -> None:
    running = gateway(_config(require=True, trusted=True))
    response = running.http.get("/open/x", headers={"x-forwarded-proto": "https"})
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == HSTS
    assert running.http.get("/open/x", headers={"x-forwarded-proto": "http"}).status_code == 403
    # An untrusted client saying "https" is not believed.
    plain = gateway(_config(require=True))
    assert plain.http.get("/open/x", headers={"x-forwarded-proto": "https"}).status_code == 403
