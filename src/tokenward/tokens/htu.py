"""The one normal form both sides of DPoP's `htu` comparison go through (RFC 9449 §4.3).

RFC 9449 asks for the target URI without query and fragment, compared after syntax-based
(RFC 3986 §6.2.2) and scheme-based (§6.2.3) normalisation:

- scheme and host lower-cased;
- percent-escapes: those of unreserved characters decoded (`%7E` is `~`), the others written
  in upper case (`%2f` is `%2F`, and stays an escape: an encoded slash is another resource);
  characters a URI may not hold raw (a space, `|`, non-ASCII) escaped as UTF-8;
- dot segments removed (after decoding, so `%2E%2E` counts as `..`);
- the scheme's default port dropped, an empty port too; an empty path is `/`.

What no normalisation makes sound is refused (ValueError): a scheme other than http(s), no
host, userinfo (`user@`), a port past 65535, a broken escape, control characters (which some
parsers drop silently: Python's urlsplit removes tab and newline), and anything longer than
MAX_LENGTH. A URL already in normal form, the usual case, is recognised by one regular
expression and returned as is.
"""

from __future__ import annotations

import re

MAX_LENGTH = 8192  # a proof is at most 4096 bytes; request URLs past this are not worth it
DEFAULT_PORTS = {"http": 80, "https": 443}

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What may stand raw in a path: unreserved, sub-delims, ":", "@" and "/".
_PATH_RAW = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_HOST_RAW = _UNRESERVED | frozenset("!$&'()*+,;=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/]*)")
_NORMAL = re.compile(
    r"(https?)://[a-z0-9\-.]+(?::([1-9][0-9]{0,4}))?/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*"
)


def _escape_table() -> dict[str, str]:
    """Every two-hex-digit escape, in any mix of case, to its normal spelling."""
    table: dict[str, str] = {}
    for byte in range(256):
        char = chr(byte)
        normal = char if char in _UNRESERVED else f"%{byte:02X}"
        for high in {f"{byte >> 4:x}", f"{byte >> 4:X}"}:
            for low in {f"{byte & 15:x}", f"{byte & 15:X}"}:
                table[high + low] = normal
    return table


_ESCAPES = _escape_table()


def normalise(url: str) -> str:
    """`url` in normal form, without query and fragment; ValueError if it cannot be one."""
    end = len(url)
    for mark in ("?", "#"):
        at = url.find(mark)
        if 0 <= at < end:
            end = at
    if end > MAX_LENGTH:
        raise ValueError("the URL is too long")
    target = url[:end]
    normal = _NORMAL.fullmatch(target)
    if normal is not None and "/." not in target and not _default_or_bad(normal[1], normal[2]):
        return target
    return _normalised(target)


def _default_or_bad(scheme: str, port: str | None) -> bool:
    return port is not None and (int(port) > 65535 or int(port) == DEFAULT_PORTS[scheme])


def _normalised(target: str) -> str:
    if _CONTROL.search(target):
        raise ValueError("control characters in the URL")
    origin = _ORIGIN.match(target)
    if origin is None:
        raise ValueError("not an absolute URL with a host")
    scheme = origin[1].lower()
    default = DEFAULT_PORTS.get(scheme)
    if default is None:
        raise ValueError("not an http(s) URL")
    host, port = _authority(origin[2])
    path = _dot_segments_removed(_escapes_normalised(target[origin.end() :], _PATH_RAW) or "/")
    shown_port = "" if port in (None, default) else f":{port}"
    return f"{scheme}://{host}{shown_port}{path}"


def _authority(authority: str) -> tuple[str, int | None]:
    """(host in lower case, port or None)."""
    if "@" in authority:
        raise ValueError("userinfo in the URL")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise ValueError("an unclosed IPv6 literal")
        host, rest = authority[: close + 1], authority[close + 1 :]
        if not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", host):
            raise ValueError("a malformed IPv6 literal")
    else:
        host, colon, port_text = authority.partition(":")
        rest = colon + port_text
        if not host or not set(host) <= _HOST_RAW:
            raise ValueError("a missing or malformed host")
    if rest and not rest.startswith(":"):
        raise ValueError("a malformed authority")
    digits = rest[1:]
    if not digits:
        return host.lower(), None  # "host:" is "host" (RFC 3986 §6.2.3)
    if not digits.isascii() or not digits.isdigit() or int(digits) > 65535:
        raise ValueError("the port must be a number up to 65535")
    return host.lower(), int(digits)


def _escapes_normalised(text: str, raw: frozenset[str]) -> str:
    """Escapes of unreserved characters decoded, the rest upper-cased; characters that may not
    stand raw escaped (UTF-8)."""
    out: list[str] = []
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char == "%":
            normal = _ESCAPES.get(text[index + 1 : index + 3])
            if normal is None:
                raise ValueError("a broken percent-escape")
            out.append(normal)
            index += 3
            continue
        if char in raw:
            out.append(char)
        else:
            try:
                out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
            except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
                raise ValueError("text that is not valid Unicode") from None
        index += 1
    return "".join(out)


def _dot_segments_removed(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: `.` dropped, `..` drops the segment before it."""
    if "/." not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    result = "/" + "/".join(kept)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"  # "/a/b/.." is "/a/": the last segment went, its slash stays
    return result
