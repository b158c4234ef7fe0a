"""One path per request: the route is chosen on exactly the path the upstream receives.

A proxy that routes on one reading of a path and forwards another lets a client pick the
policy with one spelling and the upstream resource with another (`/public/../admin`). So
every request's raw path (ASGI `raw_path`, never the server's decoded `path`) is resolved
once, here, into a `Resolved` (a plain tuple: this runs on every request):

- `route`: `target` percent-decoded once, as the upstream will decode it: the text routes are
  matched on;
- `target`: the path forwarded upstream: dot segments removed (RFC 3986 §5.2.4), runs of `/`
  merged, percent-escapes kept as the client spelled them;
- `readings`: when a segment carries a `;` parameter, the same path as upstreams that strip
  parameters read it (Tomcat, Jetty, Spring): admission refuses the request unless every
  reading selects the route `route` selects.

What an upstream could read two ways is refused (400 `invalid_path`) instead: encoded `/` or
`\\` (`%2F`, `%5C`), raw `\\`, an escaped or parameterised dot segment (`%2e%2e`, `.%2E`,
`..;x`, `.;`), control characters raw or encoded, raw `#`, space or non-ASCII bytes, broken
escapes, escapes that do not decode to UTF-8 (overlong forms of `.` and `/`), a path that
does not start with `/`, or one over MAX_PATH bytes (414). `%25` stays as sent: an upstream
decodes once, so `%252e` reaches it as the text `%2e`, never as a dot. docs/gateway.md,
"Request paths", has the table.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.types import Scope

from tokenward.gateway.policy import Denied

MAX_PATH = 8192  # bytes of raw path; longer is refused before any other work
REASON = "invalid_path"
# Paths made only of these bytes, with no `//` and no segment starting with `.`, are their own
# resolution: one regex scan (no backtracking: `/` never occurs inside a segment), no other work.
_FAST = re.compile(
    rb"/(?:[A-Za-z0-9\-_~!$&'()*+,=:@][A-Za-z0-9\-._~!$&'()*+,=:@]*"
    rb"(?:/[A-Za-z0-9\-_~!$&'()*+,=:@][A-Za-z0-9\-._~!$&'()*+,=:@]*)*/?)?"
)
# Raw bytes refused anywhere: controls, space, DEL, non-ASCII, `\` (a separator to some
# servers) and `#` (never part of a request target; a naive upstream would cut the path there).
_RAW_REFUSED = re.compile(rb"[^\x21-\x7e]|[\\#]")
_DOTS = (b".", b"..")
_SAFE = "/!$&'()*+,;=:@-._~"  # pchar and `/`: kept literal when re-encoding a decoded path


def _hex_table() -> dict[bytes, int]:
    """Every two-digit escape, in any mix of case, to its byte."""
    table: dict[bytes, int] = {}
    for value in range(256):
        pair = f"{value:02x}"
        for spelling in (pair, pair.upper(), pair[0].upper() + pair[1], pair[0] + pair[1].upper()):
            table[spelling.encode("ascii")] = value
    return table


_HEX = _hex_table()
# Decoded bytes refused in a segment: `/` and `\` would add a separator once decoded, and
# controls (NUL above all) end or split the path in some servers.
_ENCODED_SEPARATORS = frozenset({0x2F, 0x5C})
_ENCODED_CONTROLS = frozenset({*range(0x20), 0x7F})


# (route, target, readings) as above; `target` is before strip_prefix and the upstream's base.
Resolved = tuple[str, bytes, tuple[str, ...]]


def refuse(message: str, status: int = 400) -> Denied:
    return Denied(status, REASON, message, error="invalid_request")


def resolve_scope(scope: Scope) -> Resolved:
    """The request's path, resolved; raises Denied (400/414) for a path refused above."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        # A server without raw_path: its decoded path is all there is; re-encode it so the
        # upstream is sent what was routed on (a decoded `%2F` becomes a real `/` for both).
        raw = quote(str(scope["path"]), safe=_SAFE).encode("ascii")
    return resolve(raw)


def resolve(raw: bytes) -> Resolved:
    if len(raw) > MAX_PATH:
        raise refuse(f"the path is longer than {MAX_PATH} bytes", 414)
    if _FAST.fullmatch(raw):
        return raw.decode("ascii"), raw, ()
    return _resolve_slowly(raw)


def _resolve_slowly(raw: bytes) -> Resolved:
    raw = raw.partition(b"?")[0]  # some servers leave the query in raw_path
    if not raw.startswith(b"/"):
        raise refuse("the path must start with /")
    if _RAW_REFUSED.search(raw):
        raise refuse("the path holds a backslash, '#', a space, a control or a non-ASCII byte")
    kept: list[bytes] = []  # raw segments, as forwarded
    decoded: list[bytes] = []  # the same, percent-decoded once
    segments = raw.split(b"/")[1:]
    for segment in segments:
        if not segment:
            continue  # `//`: merged, so no upstream reads `//host` or merges it differently
        plain = _decode(segment) if b"%" in segment else segment
        name = plain.partition(b";")[0]
        if name in _DOTS:
            if segment not in _DOTS:
                raise refuse("an encoded dot segment (%2E) or a parameter on one (..;)")
            if segment == b".." and kept:
                kept.pop()
                decoded.pop()
            continue
        kept.append(segment)
        decoded.append(plain)
    # RFC 3986 §5.2.4 keeps the trailing `/` of `a/b/` and of `a/b/..`.
    trailing = bool(kept) and (not segments[-1] or segments[-1] in _DOTS)
    end = b"/" if trailing else b""
    target = b"/" + b"/".join(kept) + end
    route = _text(b"/" + b"/".join(decoded) + end)
    readings = _parameter_readings(kept, decoded, end) if ";" in route else ()
    return route, target, readings


def _decode(segment: bytes) -> bytes:
    first, *rest = segment.split(b"%")
    out = bytearray(first)
    for piece in rest:
        value = _HEX.get(piece[:2])
        if value is None:
            raise refuse("a broken percent-escape in the path")
        if value in _ENCODED_SEPARATORS:
            raise refuse("an encoded slash or backslash (%2F, %5C) in the path")
        if value in _ENCODED_CONTROLS:
            raise refuse("an encoded control character in the path")
        out.append(value)
        out += piece[2:]
    return bytes(out)


def _text(path: bytes) -> str:
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        # Overlong forms (`%C0%AE` for `.`) are what lenient decoders turn into separators.
        raise refuse("percent-escapes in the path that are not UTF-8") from None


def _parameter_readings(kept: list[bytes], decoded: list[bytes], end: bytes) -> tuple[str, ...]:
    """The path as upstreams that drop `;` parameters read it: cut before decoding (Tomcat,
    Jetty) or after; a segment left empty is merged away like `//`."""
    cut_raw = [_decode(s.partition(b";")[0]) for s in kept]
    cut_decoded = [s.partition(b";")[0] for s in decoded]
    readings = []
    for parts in (cut_raw, cut_decoded):
        nonempty = [part for part in parts if part]
        readings.append(_text(b"/" + b"/".join(nonempty) + (end if nonempty else b"")))
    return tuple(dict.fromkeys(readings))


def strip_segments(target: bytes, prefix: str) -> bytes:
    """`target` without the segments of a matched route prefix. Counted in segments, not
    bytes: the prefix matched the decoded path, so its spelling in `target` may differ
    (`/%61pi` for `/api`)."""
    index = 0
    for _ in range(prefix.rstrip("/").count("/")):
        index = target.find(b"/", index + 1)
        if index < 0:
            return b"/"
    return target[index:] or b"/"


def prefix_is_resolved(prefix: str) -> bool:
    """A route prefix some resolved `route` path can start with (config load refuses others)."""
    if any(char in prefix for char in ";%\\#?") or not prefix.isprintable():
        return False
    segments = prefix.split("/")[1:]
    inner = segments[:-1]  # the last may be empty: `/api/` is a prefix of `/api/x`
    return "" not in inner and not any(segment in (".", "..") for segment in segments)
