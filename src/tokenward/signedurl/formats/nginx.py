"""Links for nginx's `secure_link` module in its md5 mode (ngx_http_secure_link_module).

The nginx side, for the default expression::

    location /media/ {
        secure_link $arg_md5,$arg_expires;
        secure_link_md5 "$secure_link_expires$uri$remote_addr <secret>";
        if ($secure_link = "")  { return 403; }   # bad or missing hash
        if ($secure_link = "0") { return 410; }   # expired
    }

Here the expression is the same text with `$secret` where nginx has the literal secret, so the
secret can live in a vault rather than in code: `NginxSecureLink(secret=...)`. nginx hashes the
*decoded* `$uri`; the path is canonicalised first (canonical.py refuses `..`, `%2F`, `//`, which
nginx would normalise differently from the link), so the bytes hashed here are nginx's `$uri`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote_to_bytes

from tokenward.signedurl.canonical import canonical_path, split_url
from tokenward.signedurl.errors import malformed
from tokenward.signedurl.sign import expiry

DEFAULT_EXPRESSION = "$secure_link_expires$uri$remote_addr $secret"
MIN_SECRET = 16
# nginx variable syntax: `$name` or `${name}`, name of letters, digits and underscores.
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_REQUIRED = ("secure_link_expires", "uri", "secret")
_PARAM = re.compile(r"[A-Za-z0-9_]{1,64}")


class NginxSecureLink:
    """Signs URLs the way `secure_link_md5 "<expression>"` checks them."""

    def __init__(
        self,
        secret: str,
        *,
        expression: str = DEFAULT_EXPRESSION,
        hash_param: str = "md5",
        expires_param: str = "expires",
        clock: Callable[[], float] = time.time,
        max_ttl: int = 7 * 86400,
    ) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"an nginx secure_link secret needs at least {MIN_SECRET} characters")
        parts = _parse(expression)
        names = {name for kind, name in parts if kind == "var"}
        missing = [name for name in _REQUIRED if name not in names]
        if missing:
            # Without the expiry anyone could extend a link; without $uri it opens every file.
            raise ValueError(f"the expression must use ${', $'.join(missing)}")
        if not (_PARAM.fullmatch(hash_param) and _PARAM.fullmatch(expires_param)):
            raise ValueError("query parameter names are letters, digits and underscores")
        self._secret = secret.encode()
        self._parts = parts
        self._hash_param = hash_param
        self._expires_param = expires_param
        self._clock = clock
        self._max_ttl = max_ttl
        self.uses_remote_addr = "remote_addr" in names

    def sign_url(
        self,
        url: str,
        *,
        ttl: int | None = None,
        expires: int | None = None,
        remote_addr: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> str:
        """`url` with `md5=` and `expires=` appended; `variables` supplies any other `$name`."""
        origin, raw_path, query = split_url(url)
        path = canonical_path(raw_path)
        exp = expiry(self._clock, ttl, expires, self._max_ttl)
        values = {
            **(variables or {}),
            "secure_link_expires": str(exp),
            "remote_addr": _address(remote_addr) if self.uses_remote_addr else "",
        }
        digest = hashlib.md5(self._evaluate(unquote_to_bytes(path), values))  # noqa: S324 - nginx secure_link only speaks MD5
        token = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")
        signed = f"{self._hash_param}={token}&{self._expires_param}={exp}"
        return f"{origin}{path}?{query + '&' if query else ''}{signed}"

    def _evaluate(self, uri: bytes, values: Mapping[str, str]) -> bytes:
        out = bytearray()
        for kind, text in self._parts:
            if kind == "text":
                out += text.encode()
            elif text == "uri":
                out += uri  # nginx's $uri: percent-decoded, so raw bytes, not UTF-8 text
            elif text == "secret":
                out += self._secret
            elif text in values:
                out += values[text].encode()
            else:
                raise malformed(f"no value for ${text} in the expression")
        return bytes(out)

    def __repr__(self) -> str:
        expression = "".join(text if kind == "text" else f"${text}" for kind, text in self._parts)
        return f"NginxSecureLink(expression={expression!r})"  # $secret stays a placeholder


def _parse(expression: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    done = 0
    for match in _VARIABLE.finditer(expression):
        if match.start() > done:
            parts.append(("text", expression[done : match.start()]))
        parts.append(("var", match[1] or match[2]))
        done = match.end()
    if done < len(expression):
        parts.append(("text", expression[done:]))
    return parts


def _address(remote_addr: str | None) -> str:
    if remote_addr is None:
        raise malformed("the expression uses $remote_addr: give remote_addr")
    try:
        ipaddress.ip_address(remote_addr)
    except ValueError:
        raise malformed("remote_addr is not an IP address") from None
    return remote_addr  # as nginx prints it: the caller passes what $remote_addr will show
