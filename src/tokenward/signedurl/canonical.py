"""What exactly is signed: canonical path, canonical query, and the string to sign.

docs/signed-urls.md states the rules; in short, two spellings of a URL share one canonical form
only when every reasonable server treats them alike (RFC 3986 §6.2.2: unreserved characters
decoded, hex upper-case), and anything a server might read two ways is refused outright: dot
segments (`..`, `%2e%2e`, `..;x`), `%2F`, `%5C`, `%25` (double encoding), `%00`, `//`, raw control
characters, `;` in a query, and parameters repeated under any spelling or case.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_plus

from tokenward.signedurl.errors import malformed

VERSION = "tw1"
PREFIX = "tw_"
EXP, NBF, IP, SUB, ACL, KID, SIG = (
    "tw_exp",
    "tw_nbf",
    "tw_ip",
    "tw_sub",
    "tw_acl",
    "tw_kid",
    "tw_sig",
)
SIGNING_FIELDS = frozenset({EXP, NBF, IP, SUB, ACL, KID, SIG})
MAX_URL_PART = 8192  # longer paths or queries are refused before any work is done

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PATH_LITERAL = frozenset(_UNRESERVED + "!$&'()*+,;=:@/")
# `&` separates parameters and `;` is refused, so neither is literal inside a query piece.
_QUERY_LITERAL = frozenset(_UNRESERVED + "!$'()*+,=:@/?")


def _escape_table() -> dict[str, str]:
    """Every two-digit escape, in any mix of case, to its canonical spelling."""
    table: dict[str, str] = {}
    for byte in range(256):
        char = chr(byte)
        canonical = char if char in _UNRESERVED else f"%{byte:02X}"
        high, low = f"{byte:02x}"[0], f"{byte:02x}"[1]
        for spelling in {high + low, high.upper() + low, high + low.upper(), (high + low).upper()}:
            table[spelling] = canonical
    return table


_ESCAPES = _escape_table()
_FAST_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_FAST_QUERY = re.compile(r"[A-Za-z0-9\-._~!$'()*+,=:@/?&]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Escapes a server might decode into a separator, a second escape, or a string terminator.
_AMBIGUOUS_IN_PATH = re.compile(r"%(?:2F|5C|25|[01][0-9A-F]|7F)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_ABSOLUTE = re.compile(
    r"(https?)://([A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?)(.*)",
    re.IGNORECASE | re.DOTALL,
)


def normalize_escapes(text: str, literal: frozenset[str]) -> str:
    """Decode escapes of unreserved characters, upper-case the rest, encode what must be.

    Raises on a broken escape (`%zz`, `%4`) and on raw control characters, which some
    parsers silently drop (Python's urlsplit strips tab and newline, for one).
    """
    if _CONTROL.search(text):
        raise malformed("raw control characters in a URL")
    out: list[str] = []
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char == "%":
            canonical = _ESCAPES.get(text[index + 1 : index + 3])
            if canonical is None:
                raise malformed("a broken percent-escape")
            out.append(canonical)
            index += 3
            continue
        if char in literal:
            out.append(char)
        else:
            out.append(_encode_char(char))
        index += 1
    return "".join(out)


def _encode_char(char: str) -> str:
    try:
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise malformed("text that is not valid Unicode") from None


def canonical_path(raw: str) -> str:
    """The signed form of a raw (still percent-encoded) path; raises on ambiguous input."""
    if len(raw) > MAX_URL_PART:
        raise malformed("path too long")
    # Fast path: already canonical when it holds only literal characters, no escapes, no
    # empty segment and no segment starting with a dot (the only way to spell `.` or `..`).
    if _FAST_PATH.fullmatch(raw) and "//" not in raw and "/." not in raw:
        return raw
    if not raw.startswith("/"):
        raise malformed("a path must start with /")
    path = normalize_escapes(raw, _PATH_LITERAL)
    if _AMBIGUOUS_IN_PATH.search(path):
        raise malformed("an encoded slash, backslash, percent or control character in a path")
    if "//" in path:
        raise malformed("an empty path segment")
    for segment in path.split("/"):
        # `..;x` is `..` to servers that strip path parameters (Tomcat, some Java proxies).
        if segment.partition(";")[0] in (".", ".."):
            raise malformed("a dot segment in a path")
    return path


def split_query(raw: str) -> tuple[dict[str, str], list[str]]:
    """Signing fields (name → decoded value) and every other parameter in canonical form.

    Order is kept for the caller; what is signed is the sorted list. Duplicates are refused by
    a loose key (fully decoded, `+` as space, lower-case) so no two spellings of one name, which
    some server would merge, can both appear and then be reordered.
    """
    fields: dict[str, str] = {}
    others: list[str] = []
    if not raw:
        return fields, others
    if len(raw) > MAX_URL_PART:
        raise malformed("query too long")
    fast = _FAST_QUERY.fullmatch(raw) is not None
    if not fast and ";" in raw:
        raise malformed("';' in a query: some servers split parameters on it")
    seen: set[str] = set()
    for raw_piece in raw.split("&"):
        if not raw_piece:
            continue  # `a=1&&b=2`: an empty piece means nothing to any parser
        piece = raw_piece if fast else normalize_escapes(raw_piece, _QUERY_LITERAL)
        name, _, value = piece.partition("=")
        if not name:
            raise malformed("a query parameter without a name")
        loose = name.lower() if fast and "+" not in name else _loose(name)
        if loose in seen:
            raise malformed("a repeated query parameter")
        seen.add(loose)
        if loose.startswith(PREFIX):
            if name not in SIGNING_FIELDS:
                raise malformed("an unknown or mis-spelled tw_ parameter")
            fields[name] = value if fast else decode_value(value)
        else:
            others.append(piece)
    return fields, others


def _loose(name: str) -> str:
    return unquote_plus(name, errors="surrogateescape").lower()


def decode_value(value: str) -> str:
    """A canonical query value decoded once (RFC 3986: `+` stays `+`); must be UTF-8."""
    if "%" not in value:
        return value
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise malformed("a parameter that is not UTF-8") from None


def quote_value(text: str) -> str:
    """Text as a query value: everything but unreserved characters percent-encoded."""
    try:
        return quote(text, safe="-._~", errors="strict")
    except UnicodeEncodeError:
        raise malformed("text that is not valid Unicode") from None


def signing_header(kid: str, exp: int, nbf: str, ip: str, sub: str, mode: str) -> str:
    """Everything but the resource; newline-separated fields that cannot contain a newline."""
    return f"{VERSION}\n{kid}\n{exp}\n{nbf}\n{ip}\n{sub}\n{mode}\n"


def split_url(url: str) -> tuple[str, str, str]:
    """(origin, raw path, raw query) of an absolute http(s) URL or an absolute path.

    The origin comes back with scheme and host lower-cased (RFC 3986 §6.2.2.1); it is not
    signed: bind a link to a site by giving that site its own key set.
    """
    if _CONTROL.search(url):
        raise malformed("raw control characters in a URL")
    if url.startswith("/"):
        if url.startswith("//"):
            raise malformed("a network-path reference (//host) is not a path")
        origin, rest = "", url
    else:
        match = _ABSOLUTE.fullmatch(url)
        if match is None:
            raise malformed("not an absolute http(s) URL or a path")
        origin = f"{match[1].lower()}://{match[2].lower()}"
        rest = match[3]
    if "#" in rest:
        raise malformed("a fragment never reaches the server, so it cannot be signed")
    path, _, query = rest.partition("?")
    return origin, path or "/", query


def has_scheme(reference: str) -> bool:
    return _SCHEME.match(reference) is not None


def resolve_reference(base_path: str, reference: str) -> tuple[str, str]:
    """RFC 3986 §5.2 for a path reference against a canonical base path: (path, raw query).

    Escapes are normalised before dot segments are removed (§6.2.2 order), so `%2e%2e/x`
    resolves like `../x` instead of surviving as a literal name a server would later decode.
    """
    if "#" in reference:
        raise malformed("a fragment in a playlist URI")
    ref, _, query = reference.partition("?")
    ref = normalize_escapes(ref, _PATH_LITERAL)
    if ref.startswith("/"):
        merged = ref
    elif not ref:
        merged = base_path
    else:
        merged = base_path[: base_path.rfind("/") + 1] + ref
    return canonical_path(remove_dot_segments(merged)), query


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    result = "/" + "/".join(out)
    if segments and segments[-1] in (".", "..") and out:
        result += "/"
    return result
