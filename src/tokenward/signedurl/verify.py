"""Verification: parse, find the key, check the HMAC in constant time, then the claims.

Order matters: nothing but the shape of the link is judged before its signature verifies, so
EXPIRED, NOT_YET_VALID, WRONG_IP and WRONG_PATH describe authentic links only. A changed path,
query, expiry or binding is a BAD_SIGNATURE, since all of them are signed.

`Verifier.verify_request(path, query, client_ip, now)` is the stable entry point for the gateway's
`signed_url` route mode and the ASGI helper: it never raises, it returns a `Verdict`.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from tokenward.signedurl.canonical import (
    ACL,
    EXP,
    IP,
    KID,
    NBF,
    SIG,
    SUB,
    canonical_path,
    decode_value,
    quote_value,
    signing_header,
    split_query,
    split_url,
)
from tokenward.signedurl.errors import Reason, SignedUrlError, malformed
from tokenward.signedurl.keys import KeySet
from tokenward.signedurl.mac import HmacSha256
from tokenward.signedurl.sign import MAX_DATE, IpNetwork, canonical_network

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Verdict(NamedTuple):
    """The outcome: `reason` is None for a valid link. Carries no signature or key material."""

    reason: Reason | None
    subject: str | None = None
    kid: str | None = None
    expires: int | None = None
    prefix: str | None = None  # the signed prefix, for a prefix (ACL) link

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def status(self) -> int:
        return 200 if self.reason is None else self.reason.status


# The exact shape `BoundSigner` emits when the URL has no other query: parsed by one regex.
# Anything else (reordered, re-encoded, extra parameters) takes `split_query`, which must and
# does reach the same fields (tests/signedurl/test_properties.py checks the two agree).
_FAST_LINK = re.compile(
    r"(?:tw_acl=(/[A-Za-z0-9\-._~!$'()*,:@/]*)&)?"
    r"tw_exp=([0-9]{1,12})"
    r"(?:&tw_nbf=([0-9]{1,12}))?"
    r"(?:&tw_ip=([0-9A-Fa-f.:/]{2,64}))?"
    r"(?:&tw_sub=((?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})+))?"
    r"&tw_kid=([A-Za-z0-9._\-]{1,64})"
    r"&tw_sig=([A-Za-z0-9_\-]{1,64})"
)
# Shared refusals: the hot path allocates nothing when it says no.
_REFUSED = {reason: Verdict(reason) for reason in Reason}


def _date(text: str) -> int:
    # Decimal digits only, no sign, no leading zero: one spelling per number.
    if not (text.isascii() and text.isdigit()) or (text[0] == "0" and len(text) > 1):
        raise malformed("a date that is not a canonical decimal")
    value = int(text)
    if value > MAX_DATE:
        raise malformed("a date past 9999")
    return value


@lru_cache(maxsize=4096)
def _network(text: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise malformed("tw_ip is not an address or network") from None


@lru_cache(maxsize=65536)
def _client(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Verifier:
    """Checks tokenward-signed links against a key set, with an injected clock."""

    def __init__(
        self,
        keys: KeySet,
        *,
        clock: Callable[[], float] = time.time,
        leeway: int = 0,
        allow_unsigned_query: bool = False,
    ) -> None:
        """`leeway` absorbs clock skew between signer and verifier, for exp and nbf alike.

        `allow_unsigned_query` lets prefix links carry query parameters the signature does not
        cover (players adding `_HLS_msn=`); off by default, as the origin would see them too.
        """
        self._keys = keys
        self._clock = clock
        self._leeway = leeway
        self._allow_unsigned_query = allow_unsigned_query

    def verify_request(
        self, path: str, query: str, client_ip: str | None, now: float | None = None
    ) -> Verdict:
        """Judge one request: `path` raw as sent (ASGI `raw_path`, not the decoded `path`)."""
        try:
            return self._verify(path, query, client_ip, self._clock() if now is None else now)
        except SignedUrlError as error:
            return _REFUSED[error.reason]

    def verify_url(
        self, url: str, client_ip: str | None = None, now: float | None = None
    ) -> Verdict:
        try:
            _, path, query = split_url(url)
        except SignedUrlError as error:
            return _REFUSED[error.reason]
        return self.verify_request(path, query, client_ip, now)

    def check(self, url: str, client_ip: str | None = None, now: float | None = None) -> Verdict:
        """Like `verify_url` but raises `SignedUrlError` with the reason when the link fails."""
        verdict = self.verify_url(url, client_ip, now)
        if verdict.reason is not None:
            raise SignedUrlError(verdict.reason)
        return verdict

    def _verify(self, path: str, query: str, client_ip: str | None, now: float) -> Verdict:
        link = self._parse(path, query)
        if not hmac.compare_digest(link.key.b64(link.message), link.signature):
            return _REFUSED[Reason.BAD_SIGNATURE]
        leeway = self._leeway
        if now - leeway >= link.exp:
            return _REFUSED[Reason.EXPIRED]
        if link.nbf is not None and now + leeway < link.nbf:
            return _REFUSED[Reason.NOT_YET_VALID]
        if link.network is not None and not _within(client_ip, link.network):
            return _REFUSED[Reason.WRONG_IP]
        if link.acl is not None and not link.path.startswith(link.acl):
            return _REFUSED[Reason.WRONG_PATH]
        return Verdict(None, link.subject, link.kid, link.exp, link.acl)

    def _parse(self, path: str, query: str) -> _Link:
        """Everything up to the HMAC; raises SignedUrlError (missing, malformed, unknown key)."""
        fast = _FAST_LINK.fullmatch(query)
        if fast is not None:
            acl, exp_text, nbf_text, ip_text, subject, kid, signature = fast.groups()
            subject = None if subject is None else decode_value(subject)
            others: list[str] = []
        else:
            fields, others = split_query(query)
            signature, kid, exp_text = fields.get(SIG), fields.get(KID), fields.get(EXP)
            acl, nbf_text = fields.get(ACL), fields.get(NBF)
            ip_text, subject = fields.get(IP), fields.get(SUB)
            if signature is None or kid is None or exp_text is None:
                raise SignedUrlError(Reason.MALFORMED if fields else Reason.MISSING)
        key = self._keys.mac(kid)  # only known ids ever reach the signing string
        if key is None:
            raise SignedUrlError(Reason.UNKNOWN_KEY)
        exp = _date(exp_text)
        if subject == "" or ip_text == "":
            raise malformed("an empty tw_sub or tw_ip")  # absent and empty must not both verify
        network = None if ip_text is None else _network(ip_text)
        request_path = canonical_path(path)
        if acl is None:
            mode, resource = (
                "url",
                f"{request_path}\n" + ("&".join(sorted(others)) if others else ""),
            )
        else:
            acl = canonical_path(acl)
            if not acl.endswith("/") or (others and not self._allow_unsigned_query):
                raise malformed("a prefix link with a bad prefix or an unsigned query")
            mode, resource = "prefix", f"{acl}\n"
        ip = "" if network is None else canonical_network(network)
        sub = "" if subject is None else quote_value(subject)
        message = signing_header(kid, exp, nbf_text or "", ip, sub, mode) + resource
        nbf = None if nbf_text is None else _date(nbf_text)
        return _Link(
            key,
            message.encode(),
            signature.encode(),
            kid,
            exp,
            nbf,
            network,
            subject,
            acl,
            request_path,
        )


class _Link(NamedTuple):
    """A parsed link whose signature is not yet checked."""

    key: HmacSha256
    message: bytes
    signature: bytes
    kid: str
    exp: int
    nbf: int | None
    network: IpNetwork | None
    subject: str | None
    acl: str | None
    path: str

    def __repr__(self) -> str:  # never print the secret or the signature
        return f"_Link(kid={self.kid!r}, exp={self.exp})"


def _within(client_ip: str | None, network: IpNetwork) -> bool:
    address = None if client_ip is None else _client(client_ip)
    if address is None:
        return False
    if network.version == 6 and address.version == 4:
        # A link bound to a short IPv6 prefix around ::ffff:0:0/96 still names IPv4 clients.
        return ipaddress.IPv6Address(f"::ffff:{address}") in network
    return address in network  # across versions `in` is False, never an error


def verify_request(
    path: str,
    query: str,
    client_ip: str | None,
    now: float | None,
    *,
    keys: KeySet,
    leeway: int = 0,
) -> Verdict:
    """One-shot form of `Verifier.verify_request`; keep a `Verifier` for a hot path."""
    return Verifier(keys, leeway=leeway).verify_request(path, query, client_ip, now)
