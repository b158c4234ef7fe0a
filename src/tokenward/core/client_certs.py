"""A client's X.509 certificate as mTLS (RFC 8705) needs it: its SHA-256 thumbprint
(`x5t#S256`, what certificate-bound tokens carry), its subject DN in RFC 4514 form and its
subject alternative names (what `tls_client_auth` matches), and its public key (what
`self_signed_tls_client_auth` finds in the client's JWKS).

Parsing is `cryptography`'s. The thumbprint is of the DER bytes as received, so it is cheap
(one SHA-256) and needs no parse; the rest is parsed once, on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_CERTIFICATE_BYTES = 16 * 1024  # a client certificate is ~1-2 KB; a chain is not asked for
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


class CertificateError(ValueError):
    """The bytes are not one usable X.509 certificate."""


def thumbprint(der: bytes) -> str:
    """RFC 8705 §3.1: base64url (no padding) SHA-256 of the DER certificate."""
    digest = hashlib.sha256(der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SubjectAltNames:
    dns: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()  # canonical text (ipaddress), so "::1" and "0:0::1" compare equal
    email: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientCertificate:
    """One certificate, DER. The thumbprint is computed at construction (the only field every
    bound request needs); the parsed fields when first read. Not slotted: cached_property."""

    der: bytes = field(repr=False)
    x5t_s256: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.der or len(self.der) > MAX_CERTIFICATE_BYTES:
            raise CertificateError("the client certificate is empty or too large")
        object.__setattr__(self, "x5t_s256", thumbprint(self.der))

    @cached_property
    def parsed(self) -> x509.Certificate:
        try:
            return x509.load_der_x509_certificate(self.der)
        except ValueError:
            raise CertificateError("the client certificate is not valid DER X.509") from None

    @cached_property
    def subject_dn(self) -> str:
        """RFC 4514 string form, the form `tls_client_auth_subject_dn` is registered in."""
        return self.parsed.subject.rfc4514_string()

    @cached_property
    def sans(self) -> SubjectAltNames:
        try:
            ext = self.parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return SubjectAltNames()
        except ValueError:
            raise CertificateError("the client certificate's extensions are malformed") from None
        names = ext.value
        return SubjectAltNames(
            dns=tuple(names.get_values_for_type(x509.DNSName)),
            uri=tuple(names.get_values_for_type(x509.UniformResourceIdentifier)),
            ip=tuple(str(address) for address in names.get_values_for_type(x509.IPAddress)),
            email=tuple(names.get_values_for_type(x509.RFC822Name)),
        )

    @cached_property
    def public_key_der(self) -> bytes:
        """SubjectPublicKeyInfo DER: two keys are the same key exactly when these are equal."""
        key = self.parsed.public_key()
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    @cached_property
    def public_key_supported(self) -> bool:
        key = self.parsed.public_key()
        return isinstance(
            key,
            rsa.RSAPublicKey
            | ec.EllipticCurvePublicKey
            | ed25519.Ed25519PublicKey
            | ed448.Ed448PublicKey,
        )


def from_der(der: bytes) -> ClientCertificate:
    return ClientCertificate(der)


def from_pem(text: str) -> ClientCertificate:
    """The first certificate of a PEM text. Only the base64 between the markers is read, so
    proxies that fold the PEM onto one line (spaces or tabs for newlines) are understood."""
    if len(text) > MAX_CERTIFICATE_BYTES * 2:
        raise CertificateError("the client certificate is too large")
    start = text.find(_PEM_BEGIN)
    end = text.find(_PEM_END, start + 1)
    if start < 0 or end < 0:
        raise CertificateError("no PEM certificate found")
    body = "".join(text[start + len(_PEM_BEGIN) : end].split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the PEM certificate is not base64") from None
    return ClientCertificate(der)


def from_header(value: str) -> ClientCertificate:
    """A proxy's certificate header: PEM, URL-encoded PEM (nginx `$ssl_client_escaped_cert`,
    Envoy), or bare base64 DER (AWS ALB / some ingresses put no markers)."""
    text = value.strip()
    if "%" in text:
        text = unquote(text)
    if _PEM_BEGIN in text:
        return from_pem(text)
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the certificate header is neither PEM nor base64 DER") from None
    return ClientCertificate(der)


def normalized_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def as_pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"{_PEM_BEGIN}\n{body}{_PEM_END}\n"


def describe(cert: ClientCertificate) -> dict[str, Any]:
    """For logs and the admin view: no secret in a certificate, but keep it short."""
    return {"x5t#S256": cert.x5t_s256, "subject": cert.subject_dn}
