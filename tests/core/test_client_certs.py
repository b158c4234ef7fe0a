"""Client certificates: the RFC 8705 §3.1 thumbprint, subject DN, SANs, and the forms proxies
forward them in."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes

from tests.pki import Pki
from tokenward.core.client_certs import (
    MAX_CERTIFICATE_BYTES,
    CertificateError,
    ClientCertificate,
    from_header,
    from_pem,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_thumbprint_is_base64url_sha256_of_the_der(pki: Pki) -> None:
    issued = pki.issue("alice", "alice")
    # Computed independently: cryptography's own fingerprint of the same certificate.
    expected = base64.urlsafe_b64encode(issued.cert.fingerprint(hashes.SHA256())).rstrip(b"=")
    cert = ClientCertificate(issued.der)
    assert cert.x5t_s256 == expected.decode()
    assert len(cert.x5t_s256) == 43
    assert "=" not in cert.x5t_s256


def test_subject_dn_and_sans(pki: Pki) -> None:
    issued = pki.issue(
        "svc", "svc.example", dns=("svc.example",), uris=("spiffe://example/svc",),
        ips=("10.0.0.7", "::1"), emails=("ops@example.com",),
    )  # fmt: skip
    cert = ClientCertificate(issued.der)
    assert cert.subject_dn == "CN=svc.example,O=Example"  # RFC 4514: most specific first
    assert cert.sans.dns == ("svc.example",)
    assert cert.sans.uri == ("spiffe://example/svc",)
    assert cert.sans.ip == ("10.0.0.7", "::1")
    assert cert.sans.email == ("ops@example.com",)


def test_no_san_extension_is_empty(pki: Pki) -> None:
    cert = ClientCertificate(pki.issue("plain", "plain").der)
    assert cert.sans.dns == ()
    assert cert.sans.ip == ()


@pytest.mark.parametrize("form", ["pem", "nginx-escaped", "one-line", "base64-der"])
def test_proxy_header_forms(pki: Pki, form: str) -> None:
    issued = pki.issue("hdr", "hdr")
    pem = issued.pem
    value = {
        "pem": pem,
        "nginx-escaped": quote(pem, safe=""),  # $ssl_client_escaped_cert
        "one-line": pem.replace("\n", " "),  # some proxies fold the PEM
        "base64-der": base64.b64encode(issued.der).decode(),
    }[form]
    assert from_header(value).der == issued.der


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\nno end marker",
    ],
)
def test_malformed_headers_are_refused(value: str) -> None:
    with pytest.raises(CertificateError):
        from_header(value)


def test_bytes_that_are_not_x509_fail_when_parsed() -> None:
    cert = ClientCertificate(b"\x30\x03\x02\x01\x00")
    with pytest.raises(CertificateError):
        _ = cert.subject_dn


def test_oversized_certificate_refused(tmp_path: Path) -> None:
    with pytest.raises(CertificateError):
        ClientCertificate(b"\x30" * (MAX_CERTIFICATE_BYTES + 1))
    with pytest.raises(CertificateError):
        from_pem("x" * (MAX_CERTIFICATE_BYTES * 2 + 1))
