"""What crosses the gateway in each direction: hop-by-hop fields dropped (RFC 9110 §7.6.1),
credentials stripped, client-sent identity headers removed, verified identity added.

Identity values come from a verified token but are still data: anything outside printable
ASCII, or containing `%`, is percent-encoded (UTF-8), so no claim can inject a header line.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from urllib.parse import quote

from tokenward.core.claims import AccessToken

# RFC 9110 §7.6.1 names these; Proxy-Authorization/-Authenticate are hop-by-hop by §11.7.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
IDENTITY_PREFIX = b"x-auth-"
# Re-made by the gateway: forwarding fields from what it saw, framing from what it sends;
# Expect is answered by the gateway's own server (100-continue) before the body is read.
REWRITTEN = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"host",
        b"content-length",
        b"expect",
    }
)
# Never from the client: upstreams read these as the client's address (Forwarded, X-Real-IP
# and kin), or as the request's real URL, scheme or port (X-Original-URL and X-Rewrite-URL
# override the path in IIS and Symfony), or as the request's real method (the method-override
# fields of Rails, Symfony, Express and ASP.NET: a route's `methods:` decided on GET must not
# become a DELETE upstream). The gateway speaks X-Forwarded-For/-Proto/-Host only, and builds
# those itself, so none is kept, even from a trusted proxy.
UNTRUSTED = frozenset(
    {
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
        b"x-forwarded-prefix",
        b"x-forwarded-port",
        b"x-forwarded-scheme",
        b"x-forwarded-server",
        b"x-forwarded-ssl",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
    }
)
# Not passed back to the client: the upstream's software (Server) and a second Date next to
# the one the gateway's own server stamps on every answer.
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}


def fold(name: bytes) -> bytes:
    """A field name as servers that map `_` to `-` (CGI, WSGI, nginx with underscores on)
    read it: `X_Auth_Subject` is `x-auth-subject` to them."""
    return name.lower().replace(b"_", b"-")


class Incoming:
    """The fields of one request that go upstream, and what the gateway re-makes itself."""

    __slots__ = (
        "authorization",
        "connection",
        "content_length",
        "dpop",
        "forwarded_for",
        "forwarded_proto",
        "has_body",
        "headers",
        "host",
    )

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.forwarded_for: list[bytes] = []
        self.host: bytes | None = None
        self.content_length: bytes | None = None
        self.has_body = False  # Content-Length > 0 or Transfer-Encoding present
        self.authorization: list[bytes] = []
        self.dpop: list[bytes] = []  # DPoP proofs (RFC 9449 §4.1): consumed on dpop routes
        self.forwarded_proto: bytes | None = None
        self.connection = False  # a Connection header came: the names it lists are dropped


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Field names the sender listed in Connection: hop-by-hop for this one hop too."""
    return connection_names(b",".join(value for name, value in headers if name == b"connection"))


def connection_names(values: bytes) -> frozenset[bytes]:
    """The field names in Connection values (several values joined with `,`)."""
    names = (token.strip().lower() for token in values.split(b","))
    return frozenset(name for name in names if name)


class RequestHeaderPolicy:
    """Built once per config: which incoming fields go upstream."""

    def __init__(self, identity_names: Iterable[str], auth_cookies: Iterable[str]) -> None:
        identity = {name.encode("latin-1") for name in identity_names}
        self._identity = frozenset({*(name.lower() for name in identity), *map(fold, identity)})
        self._cookies = frozenset(auth_cookies)
        # Authorization is set aside, never forwarded as is: bearer routes consume it, and open
        # routes (auth: none) get it back from the proxy, for upstreams with their own auth.
        # DPoP proofs likewise: dpop routes consume them, other routes get them back.
        self._drop = (
            HOP_BY_HOP | REWRITTEN | UNTRUSTED | self._identity | {b"authorization", b"dpop"}
        )
        # A name with `_` that folds onto one of these is a spoof of it: dropped outright
        # (never set aside: `x_forwarded_for` is not a forwarding chain).
        self._folded_drop = frozenset(map(fold, self._drop))

    def upstream_headers(self, incoming: list[tuple[bytes, bytes]]) -> Incoming:
        result = self._split(incoming, ())
        if result.connection:  # rare: sorted again, now dropping the names it lists
            result = self._split(incoming, connection_tokens(incoming))
        return result

    def _split(self, incoming: list[tuple[bytes, bytes]], listed: Collection[bytes]) -> Incoming:
        drop = self._drop
        result = Incoming()
        out = result.headers
        for name, value in incoming:
            if name in drop or name.startswith(IDENTITY_PREFIX) or name in listed:
                self._keep_aside(result, name, value)
                continue
            if b"_" in name and self._folds_onto_dropped(name):
                continue
            if name == b"cookie" and self._cookies:
                kept = self._strip_cookies(value)
                if kept:
                    out.append((name, kept))
                continue
            out.append((name, value))
        return result

    def _folds_onto_dropped(self, name: bytes) -> bool:
        folded = fold(name)
        return folded in self._folded_drop or folded.startswith(IDENTITY_PREFIX)

    @staticmethod
    def _keep_aside(result: Incoming, name: bytes, value: bytes) -> None:
        if name == b"authorization":
            result.authorization.append(value)
        elif name == b"dpop":
            result.dpop.append(value)
        elif name == b"x-forwarded-for":
            result.forwarded_for.append(value)
        elif name == b"host":
            result.host = value
        elif name == b"x-forwarded-proto":
            result.forwarded_proto = value
        elif name == b"content-length":
            result.content_length = value
            result.has_body = value != b"0"
        elif name == b"transfer-encoding":
            result.has_body = True
        elif name == b"connection":
            result.connection = True

    def _strip_cookies(self, value: bytes) -> bytes:
        kept = [
            pair
            for pair in value.split(b";")
            if pair.strip().partition(b"=")[0].decode("latin-1") not in self._cookies
        ]
        return b";".join(kept).strip()


class IdentityHeaders:
    """Identity fields per token, remembered: a cached token is seen again and again. Keyed by
    every value the fields are made of, so two tokens can never share an entry wrongly."""

    def __init__(self, names: dict[str, str], max_entries: int = 10_000) -> None:
        self._names = names
        self._max_entries = max_entries
        self._cache: dict[tuple[str, str, str, frozenset[str]], list[tuple[bytes, bytes]]] = {}

    def __call__(self, token: AccessToken) -> list[tuple[bytes, bytes]]:
        key = (token.jti, token.sub, token.client_id, token.scopes)
        fields = self._cache.get(key)
        if fields is None:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()  # rebuilt from the next few requests
            fields = self._cache[key] = identity_headers(self._names, token)
        return list(fields)  # the caller appends to it


def identity_headers(names: dict[str, str], token: AccessToken) -> list[tuple[bytes, bytes]]:
    values = (
        ("subject", token.sub),
        ("client_id", token.client_id),
        ("scope", token.scope),
        ("jti", token.jti),
    )
    return [
        (names[claim].encode("latin-1"), safe_header_value(value))
        for claim, value in values
        if value
    ]


def safe_header_value(value: str) -> bytes:
    if value.isascii() and value.isprintable() and "%" not in value:
        return value.encode("ascii")
    return quote(value, safe=" !#$&'()*+,/:;<=>?@[]^`{|}~").encode("ascii")


def response_headers(
    upstream: list[tuple[bytes, bytes]], dechunked: bool, listed: Collection[bytes] = ()
) -> list[tuple[bytes, bytes]]:
    """The upstream's fields that go back to the client; `listed`: the names its Connection
    header lists (gateway/upstream.py gathers them while parsing the head)."""
    if listed or dechunked:
        return [
            (name, value)
            for name, value in upstream
            if name not in RESPONSE_DROP
            and name not in listed
            and not (dechunked and name == b"content-length")
        ]
    return [(name, value) for name, value in upstream if name not in RESPONSE_DROP]
