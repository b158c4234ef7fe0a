"""Mutual-TLS client authentication and certificate-bound access tokens (RFC 8705).

`tls_client_auth` (§2.1): the certificate chains to a CA the TLS terminator trusts, and carries
the one subject DN or SAN the client registered. `self_signed_tls_client_auth` (§2.2): the
certificate's public key is one of the keys in the client's registered JWKS (`jwks` or
`jwks_uri`); the TLS handshake proved the client holds its private key.

Binding (§3): a token minted for a request that came with a certificate, for a client
registered with `tls_client_certificate_bound_access_tokens`, carries `cnf.x5t#S256`. A token
has one binding: when the same request also sent a DPoP proof, the DPoP key wins.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from cryptography.x509 import Name

from tokenward.core.client_certs import CertificateError, ClientCertificate, normalized_ip
from tokenward.core.errors import JoseError
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_keys import ClientKeys
from tokenward.oauth.errors import InvalidClient, InvalidRequest
from tokenward.tokens.jwk import jwk_thumbprint, thumbprint

TLS_CLIENT_AUTH = "tls_client_auth"
SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
MTLS_METHODS = (TLS_CLIENT_AUTH, SELF_SIGNED_TLS_CLIENT_AUTH)
KEY_METHODS = ("private_key_jwt", SELF_SIGNED_TLS_CLIENT_AUTH)  # need the client's JWKS
CNF_MEMBER = "x5t#S256"
MAX_DN_LENGTH = 1024
_AROUND_COMMAS = re.compile(r"\s*(?<!\\),\s*")  # an unescaped RDN separator, spaced
SUBJECT_FIELDS = (
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
)


def registered_subject(client: ClientRecord) -> tuple[str, str] | None:
    """(field, value) of the one certificate subject a tls_client_auth client registered."""
    for name in SUBJECT_FIELDS:
        value = getattr(client, name)
        if value:
            return name, value
    return None


def check_registration(
    auth_method: str, subjects: Mapping[str, str | None], *, has_keys: bool
) -> None:
    """RFC 8705 §2.1.2: exactly one subject field for tls_client_auth, none otherwise; a
    self-signed client needs a key set. ValueError names what is wrong."""
    given = [name for name in SUBJECT_FIELDS if subjects.get(name)]
    if auth_method == TLS_CLIENT_AUTH and len(given) != 1:
        raise ValueError(
            "tls_client_auth needs exactly one of the subject DN or a SAN (dns, uri, ip, email)"
        )
    if auth_method != TLS_CLIENT_AUTH and given:
        raise ValueError("certificate subject fields are only for tls_client_auth clients")
    if auth_method == SELF_SIGNED_TLS_CLIENT_AUTH and not has_keys:
        raise ValueError("self_signed_tls_client_auth needs the client's jwks or jwks_uri")
    ip = subjects.get("tls_client_auth_san_ip")
    if ip and normalized_ip(ip) is None:
        raise ValueError(f"tls_client_auth_san_ip {ip!r} is not an IP address")


def subject_matches(client: ClientRecord, cert: ClientCertificate) -> bool:
    """§2.1.2: the registered value equals the certificate's (DN as RFC 4514 text, compared
    after parsing both sides so attribute spacing and escaping do not matter)."""
    registered = registered_subject(client)
    if registered is None:
        return False
    name, value = registered
    try:
        return _MATCHERS[name](value, cert)
    except CertificateError:
        return False


def _san_dns(value: str, cert: ClientCertificate) -> bool:
    return any(_ci_equal(value, dns) for dns in cert.sans.dns)


def _san_uri(value: str, cert: ClientCertificate) -> bool:
    return any(hmac.compare_digest(value.encode(), uri.encode()) for uri in cert.sans.uri)


def _san_ip(value: str, cert: ClientCertificate) -> bool:
    return normalized_ip(value) in cert.sans.ip


def _san_email(value: str, cert: ClientCertificate) -> bool:
    return any(_ci_equal(value, email) for email in cert.sans.email)


def _ci_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


def normalized_dn(text: str) -> str:
    """RFC 4514 text of a DN as cryptography writes it; ValueError when it is not one."""
    if len(text) > MAX_DN_LENGTH:
        raise ValueError("the subject DN is too long")
    # cryptography's parser is strict; people write "O=Example, CN=svc" (OpenSSL prints it so)
    tidy = _AROUND_COMMAS.sub(",", text.strip())
    try:
        return Name.from_rfc4514_string(tidy).rfc4514_string()
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 4514 distinguished name") from None


def _same_dn(registered: str, cert: ClientCertificate) -> bool:
    try:
        wanted = normalized_dn(registered)
    except ValueError:
        return False
    return hmac.compare_digest(wanted.encode(), cert.subject_dn.encode())


_MATCHERS: dict[str, Callable[[str, ClientCertificate], bool]] = {
    "tls_client_auth_subject_dn": _same_dn,
    "tls_client_auth_san_dns": _san_dns,
    "tls_client_auth_san_uri": _san_uri,
    "tls_client_auth_san_ip": _san_ip,
    "tls_client_auth_san_email": _san_email,
}


class MtlsAuthenticator:
    """Checks a client's certificate against its registration."""

    def __init__(self, keys: ClientKeys) -> None:
        self._keys = keys

    async def authenticate(self, client: ClientRecord, cert: ClientCertificate | None) -> None:
        """Raises InvalidClient unless `cert` authenticates `client` by its registered method."""
        if cert is None:
            raise InvalidClient("this client authenticates with a TLS client certificate")
        if client.auth_method == TLS_CLIENT_AUTH:
            if not subject_matches(client, cert):
                raise InvalidClient("client authentication failed")
            return
        if not await self._key_registered(client, cert):
            raise InvalidClient("client authentication failed")

    async def _key_registered(self, client: ClientRecord, cert: ClientCertificate) -> bool:
        try:
            wanted = thumbprint(cert.parsed.public_key())  # type: ignore[arg-type]
        except (CertificateError, JoseError, TypeError):
            return False  # a key type we never accept (DSA, Ed448...): not a match
        for refetch in (False, True):  # a new key may be published at the jwks_uri: look again
            try:
                lookup = await self._keys.lookup(client, None, refetch=refetch)
            except (JoseError, orjson.JSONDecodeError):
                return False
            for key in lookup.values():
                if key.public_jwk is not None and hmac.compare_digest(
                    jwk_thumbprint(key.public_jwk), wanted
                ):
                    return True
            if client.jwks_uri is None:
                break
        return False


def confirmation(dpop_jkt: str | None, x5t_s256: str | None) -> dict[str, Any] | None:
    """The `cnf` claim of a token: one binding, DPoP first (the proof was this request's)."""
    if dpop_jkt:
        return {"jkt": dpop_jkt}
    if x5t_s256:
        return {CNF_MEMBER: x5t_s256}
    return None


def certificate_binding(client: ClientRecord, cert: ClientCertificate | None) -> str | None:
    """The thumbprint tokens for this request are bound to, or None. A client registered for
    bound tokens that came without a certificate is refused: fail closed, never unbound."""
    if not client.tls_client_certificate_bound_access_tokens:
        return None
    if cert is None:
        raise InvalidRequest("this client's tokens are bound to its TLS client certificate")
    return cert.x5t_s256
