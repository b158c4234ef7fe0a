"""`auth: dpop` (RFC 9449 §7): the DPoP scheme, a bound token and a fresh proof for this
request; refusals carry the DPoP challenge (`DpopRefused`) instead of the Bearer one."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Scope

from tokenward.core.errors import (
    BearerError,
    InvalidDpopProof,
    InvalidRequest,
    InvalidToken,
    MissingToken,
)
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.authorizers.base import Authorized
from tokenward.gateway.headers import IdentityHeaders, Incoming
from tokenward.gateway.model import Route
from tokenward.gateway.policy import check_token
from tokenward.guard.validator import Validator
from tokenward.resource.asgi import DUPLICATE_AUTHORIZATION, certificate_of

NOT_DPOP = "this route needs a DPoP-bound token sent with the DPoP scheme and a proof"
# This request's URL as the client addressed it, for the proof's `htu` (Compiled.htu).
Htu = Callable[[Scope, Incoming, str], str]


class DpopRefused(Exception):
    """A refusal on a dpop route: answered with the DPoP challenge instead of Bearer."""

    def __init__(self, error: BearerError, algorithms: tuple[str, ...]) -> None:
        super().__init__(error.description)
        self.error = error
        self.algorithms = algorithms


class Dpop:
    __slots__ = ("_algorithms", "_htu", "_identity", "_route", "_validator")

    def __init__(
        self,
        route: Route,
        validator: Validator,
        algorithms: tuple[str, ...],
        htu: Htu,
        identity: IdentityHeaders,
    ) -> None:
        """`validator` has a DPoP verifier; `algorithms`: the ones it accepts, for the
        challenge."""
        self._route = route
        self._validator = validator
        self._algorithms = algorithms
        self._htu = htu
        self._identity = identity

    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        try:
            values = incoming.authorization
            if len(values) > 1:
                raise InvalidRequest(DUPLICATE_AUTHORIZATION)
            if not values:
                raise MissingToken
            header = values[0].decode("latin-1")
            if header[:5].lower() != "dpop ":
                raise InvalidToken(NOT_DPOP)  # a bound token as Bearer, or an unbound one
            proofs = incoming.dpop
            if len(proofs) > 1:
                raise InvalidDpopProof("send exactly one DPoP proof")  # RFC 9449 §4.3 (1)
            token = await self._validator.authenticate_request(
                header,
                dpop_proof=proofs[0].decode("latin-1") if proofs else None,
                method=scope["method"],
                url=self._htu(scope, incoming, scheme),
                certificate=certificate_of(scope),
            )
            check_token(self._route, token)
        except BearerError as error:
            raise DpopRefused(error, self._algorithms) from None
        record.token = token
        return scope, token, self._identity(token)
