"""Verified access-token claims (RFC 9068 §2.2) as a typed, immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple, TypeGuard

from tokenward.core.errors import JoseError

# Upper bound for NumericDate claims: 9999-12-31. Bigger values are an attack, not a date.
MAX_NUMERIC_DATE = 253_402_300_799
MAX_SCOPE_LENGTH = 2048
# Bounded interning of values that repeat across tokens, to keep cached tokens small.
_SHARED: dict[str, str] = {}
_AUDIENCES: dict[str | tuple[str, ...], tuple[str, ...]] = {}
_SHARED_LIMIT = 4096
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_REGISTERED = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "sid",
        "auth_time",
        "acr",
        "cnf",
    }
)


class ClaimError(JoseError):
    """A claim is missing or of the wrong type."""


class AccessToken(NamedTuple):
    """What a verified token says. Holds no raw token, so it is safe to log or pass upstream.

    A NamedTuple rather than a frozen dataclass: it is built once per cold validation, and tuple
    construction costs a third of a frozen dataclass's `__init__` (measured by `make bench` P1).
    """

    iss: str
    sub: str
    aud: tuple[str, ...]
    client_id: str
    scopes: frozenset[str]
    exp: int
    iat: int
    jti: str
    nbf: int | None = None
    sid: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    cnf: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = _EMPTY

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    @property
    def jkt(self) -> str | None:
        """RFC 9449 §6.1 key thumbprint the token is bound to, if any."""
        value = self.cnf.get("jkt") if self.cnf else None
        return value if isinstance(value, str) else None

    @property
    def x5t_s256(self) -> str | None:
        """RFC 8705 §3.1 thumbprint of the client certificate the token is bound to, if any."""
        value = self.cnf.get("x5t#S256") if self.cnf else None
        return value if isinstance(value, str) else None


@lru_cache(maxsize=1024)
def parse_scope(scope: str) -> frozenset[str]:
    """Scope strings repeat across tokens; sharing one frozenset each keeps cache entries small."""
    return frozenset(scope.split())


def numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise ClaimError(f"the access token has no {name} claim")
        return None
    # Integers only: RFC 9068 issuers emit them, and bool/float/string forms are attack surface.
    if type(value) is not int or not 0 <= value <= MAX_NUMERIC_DATE:
        raise ClaimError(f"the {name} claim is not a valid NumericDate")
    return value


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and (type(value) is not str or not value):
        raise ClaimError(f"the {name} claim is not a string")
    return value


def _scopes(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if type(value) is not str or len(value) > MAX_SCOPE_LENGTH:
        raise ClaimError("the scope claim is malformed")
    return parse_scope(value)


def _cnf(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise ClaimError("the cnf claim is malformed")
    return MappingProxyType(value)


def _nonempty_str(value: Any) -> TypeGuard[str]:
    return type(value) is str and value != ""


def _shared(value: str) -> str:
    """One string object per distinct iss/client_id/aud value: cached tokens repeat them."""
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        found = _SHARED[value] = value
    return found


def _shared_audience(value: Any) -> tuple[str, ...]:
    key: str | tuple[str, ...]
    if type(value) is str:
        key = value
    elif type(value) is list and value and all(type(item) is str for item in value):
        key = tuple(value)  # a tuple key: no string (say, with a NUL in it) can alias a list
    else:
        raise ClaimError("the aud claim is missing or malformed")
    found = _AUDIENCES.get(key)
    if found is None:
        if len(_AUDIENCES) >= _SHARED_LIMIT:
            _AUDIENCES.clear()
        found = _AUDIENCES[key] = key if isinstance(key, tuple) else (key,)
    return found


def access_token_from_claims(claims: Mapping[str, Any]) -> AccessToken:
    """Type-check every claim the checklist relies on; anything off is a `ClaimError`.

    Written as one flat function: it runs once per cold validation (P1 in `make bench`).
    """
    get = claims.get
    iss, sub, client_id, jti = get("iss"), get("sub"), get("client_id"), get("jti")
    if not (
        _nonempty_str(iss)
        and _nonempty_str(sub)
        and _nonempty_str(client_id)
        and _nonempty_str(jti)
    ):
        raise ClaimError("the iss, sub, client_id and jti claims must be non-empty strings")
    exp = numeric_date(claims, "exp", required=True)
    iat = numeric_date(claims, "iat", required=True)
    if exp is None or iat is None:  # required=True raised already; this narrows the types
        raise ClaimError("the access token has no exp or iat claim")
    extra_names = claims.keys() - _REGISTERED
    nbf = numeric_date(claims, "nbf", required=False) if "nbf" in claims else None
    return AccessToken(
        _shared(iss),
        sub,
        _shared_audience(get("aud")),
        _shared(client_id),
        _scopes(get("scope")),
        exp,
        iat,
        jti,
        iat if nbf == iat else nbf,  # one int object when equal, as they usually are
        _optional_string(claims, "sid"),
        numeric_date(claims, "auth_time", required=False) if "auth_time" in claims else None,
        _optional_string(claims, "acr") if "acr" in claims else None,
        _cnf(get("cnf")),
        MappingProxyType({name: claims[name] for name in extra_names}) if extra_names else _EMPTY,
    )
