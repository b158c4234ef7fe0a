"""The URIs a client is registered with: redirect URIs, post-logout redirect URIs, `jwks_uri`.

Checked once, when the client is registered (admin.create_client, behind the CLI, the admin API
and the console), so /authorize and /logout only ever compare against URIs that are sound:

- absolute, of URI characters only (RFC 3986; percent-encode the rest), bounded in length;
- no fragment (RFC 6749 §3.1.2) and no userinfo (`user@host`: RFC 9110 §4.2.4 deprecates it,
  and it is the classic way to make a URI look like another host's);
- https; or http on loopback only (127.0.0.1, [::1], localhost: RFC 8252 §7.3, §8.3), where
  /authorize accepts any port for the two IP literals; or, for redirects, a private-use scheme
  named after a domain (RFC 8252 §7.1: `com.example.app:/callback`, never a bare `myapp:`);
- a port, if any, of 1-65535 written as digits without leading zeros.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

MAX_URI_LENGTH = 2048  # what /authorize accepts in redirect_uri (oauth/authorize.py LIMITS)
MAX_URIS = 20  # per list; a web app has a few, a native app one or two
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})

_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_REG_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # DNS names and IPv4 literals
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_SHOWN = 80  # characters of a refused URI quoted back


class UriError(ValueError):
    """A registered URI is refused; the message names it and says what to fix."""


def redirect_uris(uris: Sequence[str], what: str = "redirect URI") -> tuple[str, ...]:
    """`uris` checked as redirect targets, duplicates dropped (order kept)."""
    if len(uris) > MAX_URIS:
        raise UriError(f"at most {MAX_URIS} {what}s per client")
    for uri in uris:
        check_uri(uri, what, private_use=True)
    return tuple(dict.fromkeys(uris))


def check_uri(uri: str, what: str, *, private_use: bool = False) -> None:
    """One URI; `private_use`: a private-use scheme (a native app's redirect) is allowed too."""
    problem = _problem(uri, private_use)
    if problem:
        shown = repr(uri[:_SHOWN]) + ("..." if len(uri) > _SHOWN else "")
        raise UriError(f"{what} {shown}: {problem}")


def _problem(uri: str, private_use: bool) -> str | None:
    problem = _text_problem(uri)
    if problem:
        return problem
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return "not an absolute URI: it needs a scheme, e.g. https://app.example/callback"
    return _parts_problem(scheme[1].lower(), uri[scheme.end() :], private_use)


def _text_problem(uri: str) -> str | None:
    if len(uri) > MAX_URI_LENGTH:
        return f"longer than {MAX_URI_LENGTH} characters"
    if not _URI_CHARACTERS.fullmatch(uri):
        return "only URI characters are allowed (RFC 3986): percent-encode the others"
    if _BROKEN_ESCAPE.search(uri):
        return "a broken percent-escape"
    if "#" in uri:
        return "a fragment (#) is not allowed (RFC 6749 §3.1.2)"
    return None


def _parts_problem(scheme: str, rest: str, private_use: bool) -> str | None:
    web = scheme in ("http", "https")
    if not web and not (private_use and "." in scheme):
        return _SCHEMES_ALLOWED[private_use]
    if not rest.startswith("//"):
        # A private-use URI may do without an authority (com.example.app:/callback).
        return "an http(s) URI needs a host (https://host/path)" if web else None
    authority = re.split(r"[/?]", rest[2:], maxsplit=1)[0]
    problem = _authority_problem(authority)
    if problem or scheme != "http":
        return problem
    if _host(authority).lower() not in LOOPBACK_HOSTS:
        return "http is allowed on loopback only (127.0.0.1, [::1], localhost): use https"
    return None


_SCHEMES_ALLOWED = {
    True: "the scheme must be https, http on loopback, or a private-use scheme named after a "
    "domain you control (RFC 8252 §7.1, e.g. com.example.app:/callback)",
    False: "the scheme must be https (http on loopback only)",
}


def _authority_problem(authority: str) -> str | None:
    if "@" in authority:
        return "user information (user@) is not allowed"
    host = _host(authority)
    after = authority[len(host) :]
    if not _host_valid(host) or (after and not after.startswith(":")):
        return "the host is missing or malformed"
    port = after[1:]
    if after and (not _PORT.fullmatch(port) or int(port) > 65535):
        return "the port must be 1-65535, digits only, without leading zeros"
    return None


def _host(authority: str) -> str:
    """The host part of an authority without userinfo: up to the port's colon, if any."""
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]  # "" when the bracket is never closed
    return authority.partition(":")[0]


def _host_valid(host: str) -> bool:
    if not host.startswith("["):
        return _REG_NAME.fullmatch(host) is not None
    if "%" in host:
        return False  # a zone identifier (%25eth0) means nothing off this machine
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True
