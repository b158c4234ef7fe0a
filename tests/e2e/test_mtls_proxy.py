"""mTLS behind a TLS-terminating proxy: a real nginx asks for client certificates
(`ssl_verify_client optional_no_ca`, so self-signed ones pass too) and forwards the
certificate URL-encoded (`$ssl_client_escaped_cert`) to `tokenward serve`, which believes the
header only from `trusted_proxies`. The same header from any other address is ignored."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.docs.blocks import documented
from tests.e2e.live import free_port
from tests.e2e.mtls_setup import Served, serve
from tests.pki import Issued, Pki, self_signed
from tests.signedurl.test_nginx_real import _binary, _drop_privileges, _wait_until_listening

HEADER = "X-SSL-Client-Cert"
NGINX = """
daemon off;
master_process on;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    server {{
{server}
    }}
}}
"""


def _server_block(base: Path, port: int, upstream: int) -> str:
    """docs/mtls.md's nginx block, with this test's port, files and upstream."""
    text = documented("docs/mtls.md", "nginx", "listen 443 ssl;").text
    for written, actual in (
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("/etc/nginx/tls/auth.example.com.pem", str(base / "server.pem")),
        ("/etc/nginx/tls/auth.example.com.key", str(base / "server.key")),
        ("127.0.0.1:8000", f"127.0.0.1:{upstream}"),
    ):
        assert written in text, written
        text = text.replace(written, actual)
    assert HEADER in text
    return text


@dataclass
class Front:
    served: Served
    origin: str  # nginx, https
    pki: Pki
    selfie: Issued
    other: Issued

    def http(self, cert: Issued | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
        if cert is not None:
            context.load_cert_chain(*cert.files)
        return httpx.Client(base_url=self.origin, verify=context, timeout=10)


def _start_nginx(base: Path, pki: Pki, port: int, upstream: int) -> subprocess.Popen[bytes]:
    binary = _binary()
    (base / "tmp").mkdir()
    server = pki.server()
    shutil.copy(server.cert_path, base / "server.pem")
    shutil.copy(server.key_path, base / "server.key")
    config = NGINX.format(base=base, server=_server_block(base, port, upstream))
    (base / "nginx.conf").write_text(config)
    conf, log = str(base / "nginx.conf"), str(base / "error.log")
    process = subprocess.Popen(
        [binary, "-p", str(base), "-c", conf, "-e", log],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **_drop_privileges(base),
    )
    try:
        _wait_until_listening(process, port, base)
    except BaseException:
        process.kill()  # nobody else holds it yet: reap it here, not in a later test's GC
        process.wait(10)
        raise
    return process


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("mtls-proxy")
    pki = Pki(tmp / "pki")
    nginx_port, upstream = free_port(), free_port()
    env = {
        "TOKENWARD_ISSUER": f"https://127.0.0.1:{nginx_port}",
        "TOKENWARD_TRUSTED_PROXIES": "127.0.0.1/32",
        "TOKENWARD_MTLS_CERTIFICATE_HEADER": HEADER,
    }
    base = Path(tempfile.mkdtemp(prefix="tokenward-nginx-mtls-"))
    with serve(tmp, env=env, port=upstream) as served:
        process = _start_nginx(base, pki, nginx_port, upstream)
        try:
            other = pki.issue("other", "other", dns=("other.example",))
            selfie = self_signed(tmp, "me", "me")
            yield Front(served, f"https://127.0.0.1:{nginx_port}", pki, selfie, other)
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            shutil.rmtree(base, ignore_errors=True)


def thumbprint(cert: Issued) -> str:
    return base64.urlsafe_b64encode(cert.cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()


def register_self_signed(front: Front, client_id: str, cert: Issued) -> None:
    jwks = front.served.data_dir.parent / f"{client_id}.jwks.json"
    jwks.write_text(json.dumps(cert.jwks()))
    front.served.cli(
        "client", "create", "--client-id", client_id, "--grant-type", "client_credentials",
        "--scope", "read", "--auth-method", "self_signed_tls_client_auth", "--jwks", str(jwks),
    )  # fmt: skip


def test_self_signed_client_through_nginx_gets_a_bound_token(front: Front) -> None:
    register_self_signed(front, "edge-app", front.selfie)
    with front.http(front.selfie) as http:
        response = http.post(
            "/token", data={"grant_type": "client_credentials", "client_id": "edge-app"}
        )
        assert response.status_code == 200, response.text
        access = response.json()["access_token"]
        keys = KeySet.import_key_set(http.get("/jwks").json())
        claims = jwt.decode(access, keys, algorithms=["ES256"]).claims
        assert claims["cnf"] == {"x5t#S256": thumbprint(front.selfie)}
        assert claims["iss"] == front.origin
        auth = {"authorization": f"Bearer {access}"}
        assert http.get("/api/hello", headers=auth).status_code == 200
    with front.http(front.other) as http:  # the same token through nginx, another certificate
        refused = http.get("/api/hello", headers=auth)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_header_from_an_untrusted_address_is_ignored(front: Front) -> None:
    """Straight to the server, not through nginx, from 127.0.0.2 (not a trusted proxy), with a
    well-formed header naming the client's certificate: no certificate counts."""
    register_self_signed(front, "forger-target", front.selfie)
    forged = {HEADER: quote(front.selfie.pem, safe="")}
    data = {"grant_type": "client_credentials", "client_id": "forger-target"}
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=front.served.base, transport=transport, timeout=10) as http:
        refused = http.post("/token", data=data, headers=forged)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    with httpx.Client(base_url=front.served.base, timeout=10) as http:  # from 127.0.0.1: trusted
        assert http.post("/token", data=data, headers=forged).status_code == 200


def test_no_certificate_through_nginx_is_invalid_client(front: Front) -> None:
    register_self_signed(front, "edge-none", front.selfie)
    with front.http(None) as http:
        refused = http.post(
            "/token", data={"grant_type": "client_credentials", "client_id": "edge-none"}
        )
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_client_cannot_smuggle_its_own_header_through_nginx(front: Front) -> None:
    register_self_signed(front, "edge-smuggle", front.selfie)
    with front.http(None) as http:  # nginx replaces the header with the (absent) certificate
        refused = http.post(
            "/token",
            data={"grant_type": "client_credentials", "client_id": "edge-smuggle"},
            headers={HEADER: quote(front.selfie.pem, safe="")},
        )
    assert refused.status_code == 401
