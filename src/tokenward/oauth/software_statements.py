"""Software statements (RFC 7591 §2.3): a JWT about a piece of client software, signed by an
issuer the operator trusts, whose claims are client metadata that override the request's.

A statement is accepted only if: it is a compact JWS of at most `MAX_STATEMENT_LENGTH`
characters; its `iss` (read before verifying, only to choose the keys) is a configured issuer
(else `unapproved_software_statement`); its signature verifies with that issuer's keys (fetched
from its `jwks_uri`, cached) in the one algorithm pinned for it; its claims are a JSON object;
`exp`, when present, is in the future and `iat`, when present, not in the future beyond the
leeway. Anything else is `invalid_software_statement`. The JWT's own claims (iss, exp, ...) are
not client metadata and are dropped from what overrides the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenward.core.errors import JoseError
from tokenward.oauth.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement
from tokenward.oauth.exchange_tokens import IssuerKeys
from tokenward.tokens.jws import UnknownKeyError, parse_compact, payload_object, verify_compact

MAX_STATEMENT_LENGTH = 16 * 1024
JWT_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


@dataclass(frozen=True, slots=True)
class StatementIssuer:
    issuer: str
    keys: IssuerKeys
    algorithm: str  # pinned: a key of this issuer for any other algorithm is refused


class SoftwareStatements:
    def __init__(
        self,
        issuers: Sequence[StatementIssuer],
        *,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = {item.issuer: item for item in issuers}
        self._leeway = leeway
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._issuers)

    async def metadata(self, statement: object) -> dict[str, Any]:
        """The statement's client metadata (its JWT claims dropped), verified."""
        if (
            not isinstance(statement, str)
            or len(statement) > MAX_STATEMENT_LENGTH
            or not statement.isascii()
        ):
            raise InvalidSoftwareStatement("the software statement must be a compact JWT")
        try:
            unverified = payload_object(parse_compact(statement))  # only to choose the keys
        except JoseError:
            raise InvalidSoftwareStatement("the software statement is not a signed JWT") from None
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise UnapprovedSoftwareStatement("the software statement's issuer is not trusted")
        claims = await _verified(statement, issuer)
        if claims.get("iss") != issuer.issuer:
            raise UnapprovedSoftwareStatement("the software statement's issuer is not trusted")
        self._check_times(claims)
        return {name: value for name, value in claims.items() if name not in JWT_CLAIMS}

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        expires = _number(claims, "exp")
        if expires is not None and expires <= now:
            raise InvalidSoftwareStatement("the software statement has expired")
        issued = _number(claims, "iat")
        if issued is not None and issued > now + self._leeway:
            raise InvalidSoftwareStatement("the software statement is issued in the future")


async def _verified(statement: str, issuer: StatementIssuer) -> dict[str, Any]:
    await issuer.keys.refresh(unknown_kid=False)  # no-op unless past its max-age
    for attempt in (1, 2):
        try:
            jws, key = verify_compact(statement, issuer.keys.get)
        except UnknownKeyError:
            if attempt == 2 or not await issuer.keys.refresh(unknown_kid=True):
                break
            continue
        except JoseError:
            raise InvalidSoftwareStatement("the software statement's signature fails") from None
        if key.alg.name != issuer.algorithm:
            raise InvalidSoftwareStatement("the software statement's algorithm is not pinned")
        try:
            return payload_object(jws)
        except JoseError:
            raise InvalidSoftwareStatement(
                "the software statement's claims are malformed"
            ) from None
    raise InvalidSoftwareStatement("no key of the software statement's issuer matches")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSoftwareStatement(f"the software statement's {name} is malformed")
    return float(value)
