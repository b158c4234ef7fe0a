"""Akamai EdgeAuth (Auth Token 2.0) tokens: `exp=...~acl=...~hmac=...`, HMAC-SHA256 in hex.

The token lists `ip`, `st`, `exp`, `acl`, `id`, `data` (those present, in that order) joined by
`~`; the HMAC covers the same fields plus, for a URL token, `url=<path>` (sent to the edge in
the request itself, not in the token) and an optional `salt=`. The key is the hex string the
edge property is configured with. Field values are emitted unescaped, as EdgeAuth's default
(`escape_early` off) does, so values holding a delimiter are refused rather than mangled.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Sequence

from tokenward.signedurl.canonical import canonical_path, split_url
from tokenward.signedurl.errors import malformed
from tokenward.signedurl.sign import expiry

FIELD_DELIMITER = "~"
ACL_DELIMITER = "!"
MIN_KEY_BYTES = 16
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
# Printable ASCII without the delimiters, `&` and `#` (which would end the query value early).
_FIELD = re.compile(r"[!-~]{1,1024}")


class EdgeAuthSigner:
    """Signs ACL (wildcard path) and URL tokens for Akamai's Auth Token 2.0 verification."""

    def __init__(
        self,
        key_hex: str,
        *,
        token_name: str = "__token__",
        salt: str | None = None,
        clock: Callable[[], float] = time.time,
        max_ttl: int = 7 * 86400,
    ) -> None:
        try:
            key = binascii.a2b_hex(key_hex)
        except (binascii.Error, ValueError):
            raise ValueError("the EdgeAuth key is an even-length hex string") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"an EdgeAuth key needs at least {MIN_KEY_BYTES} bytes")
        if not _TOKEN_NAME.fullmatch(token_name):
            raise ValueError("a token name is letters, digits, _ and -")
        self._key = key
        self._salt = None if salt is None else _field("salt", salt)
        self.token_name = token_name
        self._clock = clock
        self._max_ttl = max_ttl

    def acl_token(
        self,
        acl: str | Sequence[str],
        *,
        ttl: int | None = None,
        expires: int | None = None,
        start_time: int | None = None,
        ip: str | None = None,
        session_id: str | None = None,
        payload: str | None = None,
    ) -> str:
        """A token for one ACL (`/videos/abc/*`) or several (joined with `!`)."""
        entries = [acl] if isinstance(acl, str) else list(acl)
        if not entries or any(ACL_DELIMITER in entry for entry in entries):
            raise malformed("ACL entries are non-empty and hold no '!'")
        acl_text = _field("acl", ACL_DELIMITER.join(entries))
        exp = expiry(self._clock, ttl, expires, self._max_ttl)
        fields = self._fields(exp, start_time, ip, session_id, payload, acl_text)
        return self._token(fields, fields)

    def url_token(
        self,
        url: str,
        *,
        ttl: int | None = None,
        expires: int | None = None,
        start_time: int | None = None,
        ip: str | None = None,
        session_id: str | None = None,
        payload: str | None = None,
    ) -> str:
        """A token for exactly this path (the edge hashes the request path as `url=`)."""
        _, raw_path, _ = split_url(url)
        path = _field("url", canonical_path(raw_path))
        exp = expiry(self._clock, ttl, expires, self._max_ttl)
        fields = self._fields(exp, start_time, ip, session_id, payload, None)
        return self._token(fields, [*fields, f"url={path}"])

    def sign_url(self, url: str, *, ttl: int | None = None, expires: int | None = None) -> str:
        """`url` with a URL token in its query: `?__token__=exp=...~hmac=...`."""
        origin, raw_path, query = split_url(url)
        path = canonical_path(raw_path)
        token = self.url_token(path, ttl=ttl, expires=expires)
        return f"{origin}{path}?{query + '&' if query else ''}{self.token_name}={token}"

    def _fields(
        self,
        exp: int,
        start_time: int | None,
        ip: str | None,
        session_id: str | None,
        payload: str | None,
        acl: str | None,
    ) -> list[str]:
        fields = []
        if ip is not None:
            fields.append(f"ip={_ip(ip)}")
        if start_time is not None:
            if not 0 < start_time < exp:
                raise malformed("start_time must be before the expiry")
            fields.append(f"st={start_time}")
        fields.append(f"exp={exp}")
        if acl is not None:
            fields.append(f"acl={acl}")
        if session_id is not None:
            fields.append(f"id={_field('id', session_id)}")
        if payload is not None:
            fields.append(f"data={_field('data', payload)}")
        return fields

    def _token(self, fields: list[str], hashed: list[str]) -> str:
        source = [*hashed, f"salt={self._salt}"] if self._salt is not None else hashed
        message = FIELD_DELIMITER.join(source).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return FIELD_DELIMITER.join([*fields, f"hmac={digest}"])

    def __repr__(self) -> str:
        return f"EdgeAuthSigner(token_name={self.token_name!r}, key=<redacted>)"


def _field(name: str, value: str) -> str:
    if not _FIELD.fullmatch(value) or any(char in value for char in "~&#"):
        raise malformed(f"the {name} field must be printable ASCII without ~ & #")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise malformed("ip is not an IP address") from None
