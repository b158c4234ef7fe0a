"""Signing: a URL (path and query exactly) or a path prefix, under one set of claims.

`UrlSigner.sign_url` and `sign_prefix` are the one-shot calls. `UrlSigner.bind` fixes the
claims (expiry, not-before, client IP, subject) once and returns a `BoundSigner` that signs many
resources with them: the HMAC input's constant part is encoded once, which is what keeps a
1,000-segment playlist well inside its 10 ms budget.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from tokenward.signedurl.canonical import (
    ACL,
    EXP,
    IP,
    KID,
    NBF,
    SIG,
    SUB,
    canonical_path,
    quote_value,
    signing_header,
    split_query,
    split_url,
)
from tokenward.signedurl.errors import malformed
from tokenward.signedurl.keys import KeySet, SigningKey

MAX_SUBJECT = 256
MAX_DATE = 253_402_300_799  # 9999-12-31: a bigger expiry is a bug, not a date
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_binding(client_ip: str, prefix: int | None = None) -> str:
    """Canonical text of an address or network: `203.0.113.7`, `2001:db8::/48`.

    A bare address (or a prefix of the full length) binds exactly that address; `prefix`
    widens it to the client's network (mobile clients hop between addresses of one /24 or /64).
    """
    try:
        if prefix is None:
            network: IpNetwork = ipaddress.ip_network(client_ip, strict=True)
        else:
            network = ipaddress.ip_network(f"{client_ip}/{prefix}", strict=False)
    except ValueError:
        raise malformed("not an IP address or network (host bits must be zero)") from None
    return canonical_network(network)


def canonical_network(network: IpNetwork) -> str:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d is how dual-stack sockets name IPv4 peers
            network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def expiry(clock: Callable[[], float], ttl: int | None, expires: int | None, max_ttl: int) -> int:
    """Exactly one of a TTL and an absolute Unix time, in the future and within `max_ttl`."""
    now = int(clock())
    if (ttl is None) == (expires is None):
        raise malformed("give exactly one of ttl and expires")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= max_ttl:
            raise malformed(f"ttl must be 1-{max_ttl} seconds")
        return now + ttl
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise malformed("expires is an integer Unix time")
    if not now < expires <= min(now + max_ttl, MAX_DATE):
        raise malformed("expires must be in the future and within max_ttl")
    return expires


@dataclass(frozen=True, slots=True)
class PrefixGrant:
    """A signature over every path under `prefix`: append `query` to any URL below it."""

    prefix: str
    query: str = field(repr=False)  # a usable credential: kept out of logs
    expires: int = 0

    def url(self, path_or_url: str) -> str:
        origin, raw_path, raw_query = split_url(path_or_url)
        path = canonical_path(raw_path)
        if not path.startswith(self.prefix):
            raise malformed("the path is not under the signed prefix")
        if raw_query:
            raise malformed("a prefix signature does not cover a query")
        return f"{origin}{path}?{self.query}"


class BoundSigner:
    """Signs resources under fixed claims. Holds the secret, so its repr names only the key id."""

    __slots__ = ("_kid", "_mac", "_params", "_prefix_header", "_url_header", "expires")

    def __init__(self, key: SigningKey, exp: int, nbf: int | None, ip: str, sub: str) -> None:
        nbf_text = "" if nbf is None else str(nbf)
        self.expires = exp
        self._kid = key.kid
        self._mac = key.mac
        self._url_header = signing_header(key.kid, exp, nbf_text, ip, sub, "url").encode()
        self._prefix_header = signing_header(key.kid, exp, nbf_text, ip, sub, "prefix").encode()
        params = [f"{EXP}={exp}"]
        if nbf is not None:
            params.append(f"{NBF}={nbf}")
        if ip:
            params.append(f"{IP}={ip}")
        if sub:
            params.append(f"{SUB}={sub}")
        params.append(f"{KID}={key.kid}&{SIG}=")
        self._params = "&".join(params)

    def query_for(self, path: str, others: Sequence[str] = ()) -> str:
        """The query to put after `path` (canonical): `others` in order, then the signature."""
        signed_query = "&".join(sorted(others)) if others else ""
        message = self._url_header + f"{path}\n{signed_query}".encode()
        tail = self._params + self._mac.b64(message).decode("ascii")
        return "&".join([*others, tail]) if others else tail

    def sign_url(self, url: str) -> str:
        """`url` (absolute http(s) or a path) with its signature appended, canonically spelled."""
        origin, raw_path, raw_query = split_url(url)
        path = canonical_path(raw_path)
        fields, others = split_query(raw_query)
        if fields:
            raise malformed("the URL already carries tw_ parameters")
        return f"{origin}{path}?{self.query_for(path, others)}"

    def sign_prefix(self, prefix: str) -> PrefixGrant:
        acl = canonical_path(prefix)
        if not acl.endswith("/"):
            # Without the slash `/videos/a` would also cover `/videos/abc`.
            raise malformed("a signed prefix must end with /")
        signature = self._mac.b64(self._prefix_header + f"{acl}\n".encode()).decode("ascii")
        # The ACL is a path, escapes included, carried as a query value: encode it once more.
        acl_value = quote(acl, safe="/-._~!$'()*,:@")
        return PrefixGrant(acl, f"{ACL}={acl_value}&{self._params}{signature}", self.expires)

    def __repr__(self) -> str:
        return f"BoundSigner(kid={self._kid!r}, expires={self.expires})"


class UrlSigner:
    """Signs with the key set's current key; the clock is injected so tests never sleep."""

    def __init__(
        self,
        keys: KeySet,
        *,
        clock: Callable[[], float] = time.time,
        max_ttl: int = 7 * 86400,
    ) -> None:
        self.keys = keys
        self._clock = clock
        self.max_ttl = max_ttl

    def bind(
        self,
        *,
        ttl: int | None = None,
        expires: int | None = None,
        not_before: int | None = None,
        client_ip: str | None = None,
        ip_prefix: int | None = None,
        subject: str | None = None,
    ) -> BoundSigner:
        """Fix the claims: give `ttl` seconds from now or an absolute `expires`, not both."""
        exp = expiry(self._clock, ttl, expires, self.max_ttl)
        if not_before is not None and not (0 <= not_before < exp):
            raise malformed("not_before must be before the expiry")
        ip = "" if client_ip is None else ip_binding(client_ip, ip_prefix)
        if subject is not None and not (0 < len(subject) <= MAX_SUBJECT):
            raise malformed(f"a subject is 1-{MAX_SUBJECT} characters")
        sub = "" if subject is None else quote_value(subject)
        return BoundSigner(self.keys.current, exp, not_before, ip, sub)

    def sign_url(
        self,
        url: str,
        *,
        ttl: int | None = None,
        expires: int | None = None,
        not_before: int | None = None,
        client_ip: str | None = None,
        ip_prefix: int | None = None,
        subject: str | None = None,
    ) -> str:
        """Sign one URL, path and query exactly; the claims are `bind`'s."""
        bound = self.bind(
            ttl=ttl,
            expires=expires,
            not_before=not_before,
            client_ip=client_ip,
            ip_prefix=ip_prefix,
            subject=subject,
        )
        return bound.sign_url(url)

    def sign_prefix(
        self,
        prefix: str,
        *,
        ttl: int | None = None,
        expires: int | None = None,
        not_before: int | None = None,
        client_ip: str | None = None,
        ip_prefix: int | None = None,
        subject: str | None = None,
    ) -> PrefixGrant:
        """Sign every path under `prefix` (which must end with /); the claims are `bind`'s."""
        bound = self.bind(
            ttl=ttl,
            expires=expires,
            not_before=not_before,
            client_ip=client_ip,
            ip_prefix=ip_prefix,
            subject=subject,
        )
        return bound.sign_prefix(prefix)
