"""Mints access tokens in the format each client is registered for (JWT or opaque).

A JWT is signed with the algorithm its client, else its audience, else the deployment chose
(tokens/signing_choice.py), and never with another: an algorithm without an active key, or one
the client's profile forbids (ML-DSA under FAPI 2.0), refuses the request with a clear error
instead of signing in some other algorithm than the one the resource server was promised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import structlog

from tokenward.core.records import ClientRecord
from tokenward.oauth.errors import InvalidClient, InvalidTarget
from tokenward.oauth.profiles import Profiles
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant

log = structlog.get_logger(__name__)

# Which algorithm signs a JWT access token for these audiences and this client pin
# (tokens.signing_choice.SigningPolicy.access_token_alg).
AlgorithmOf = Callable[[Sequence[str], str | None], str]


class AccessTokenStrategy(Protocol):
    format: str

    async def mint(self, grant: TokenGrant) -> IssuedAccessToken: ...


class AccessTokenIssuer:
    def __init__(
        self,
        strategies: dict[str, AccessTokenStrategy],
        *,
        algorithm_of: AlgorithmOf | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        """`algorithm_of`: lets the client's profile refuse an audience's algorithm before
        anything is signed (None: no such check, as for a single-algorithm keyring)."""
        self._strategies = strategies
        self._algorithm_of = algorithm_of
        self._profiles = profiles or Profiles()

    async def issue(self, client: ClientRecord, grant: TokenGrant) -> IssuedAccessToken:
        if client.access_token_alg is not None and grant.signing_alg is None:
            grant = replace(grant, signing_alg=client.access_token_alg)
        if client.token_format == "jwt":
            self._check_profile(client, grant)
        try:
            issued = await self._strategies[client.token_format].mint(grant)
        except NoSigningKey as exc:
            raise _refusal(client, grant, exc) from None
        if grant.cnf and grant.cnf.get("jkt"):
            return replace(issued, token_type="DPoP")  # RFC 9449 §5: bound tokens say so
        return issued

    def _check_profile(self, client: ClientRecord, grant: TokenGrant) -> None:
        if self._algorithm_of is None:
            return
        alg = self._algorithm_of(grant.audience, grant.signing_alg)
        refusal = self._profiles.for_client(client).alg_refusal(alg, "access tokens")
        if refusal is None:
            return
        log.warning("access_token_alg_refused", client_id=client.client_id, alg=alg)
        if grant.signing_alg is not None:  # the client's own pin (registered before the profile)
            raise InvalidClient(f"{refusal}; register the client again")
        # RFC 8707 §2: the resource asked for cannot be served to this client.
        raise InvalidTarget(f"{refusal}: the requested resource is signed with it")


def _refusal(client: ClientRecord, grant: TokenGrant, exc: NoSigningKey) -> Exception:
    """A pinned algorithm without a key: the operator's to fix; the client learns which one.
    Logged (the alg and client, no token) so the operator sees it without a client's report."""
    log.error("no_signing_key", client_id=client.client_id, alg=exc.alg)
    text = (
        f"this server holds no active {exc.alg[:20]} signing key, which "
        + ("the client is registered for" if grant.signing_alg else "the requested resource uses")
        + f"; the operator must add {exc.alg[:20]} to TOKENWARD_SIGNING_ALGS"
    )
    return InvalidClient(text) if grant.signing_alg else InvalidTarget(text)
