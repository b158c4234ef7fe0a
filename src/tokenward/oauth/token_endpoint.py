"""The token endpoint (RFC 6749 §3.2): authenticate the client, then the handler of its grant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tokenward.core.client_certs import ClientCertificate
from tokenward.core.errors import InvalidDpopProof, JoseError
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import (
    DpopProofRefused,
    InvalidRequest,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from tokenward.oauth.mtls import certificate_binding
from tokenward.oauth.profiles import Profiles
from tokenward.oauth.scopes import format_scope
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.grant import IssuedAccessToken

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}  # RFC 6749 §5.1


@dataclass(frozen=True, slots=True)
class TokenRequest:
    params: Mapping[str, str]
    resources: tuple[str, ...] = ()
    authorization: str | None = field(default=None, repr=False)
    dpop: str | None = field(default=None, repr=False)
    client_ip: str | None = None
    dpop_jkt: str | None = None  # set once the DPoP proof verified: what tokens get bound to
    # The TLS client certificate (its own connection's, or a trusted proxy's header), and once
    # the client is authenticated, the thumbprint its tokens get bound to (RFC 8705 §3).
    certificate: ClientCertificate | None = field(default=None, repr=False)
    x5t_s256: str | None = None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: dict(NO_STORE))


def token_response(
    issued: IssuedAccessToken, refresh_token: str | None = None, **extra: Any
) -> TokenResponse:
    body: dict[str, Any] = {
        "access_token": issued.value,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
    }
    if issued.claims.scopes:
        body["scope"] = format_scope(issued.claims.scopes)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body.update(extra)
    return TokenResponse(body)


class GrantHandler(Protocol):
    grant_type: str

    async def handle(self, request: TokenRequest, client: ClientRecord) -> TokenResponse: ...


class TokenEndpoint:
    def __init__(
        self,
        authenticator: ClientAuthenticator,
        handlers: Iterable[GrantHandler],
        dpop: DpopVerifier | None = None,
        token_url: str = "",
        profiles: Profiles | None = None,
    ) -> None:
        self._profiles = profiles or Profiles()
        self._authenticator = authenticator
        self._handlers = {handler.grant_type: handler for handler in handlers}
        self.dpop = dpop
        self._token_url = token_url

    @property
    def grant_types(self) -> list[str]:
        return sorted(self._handlers)

    async def handle(self, request: TokenRequest) -> TokenResponse:
        client = await self._authenticator.authenticate(
            request.params, request.authorization, request.certificate
        )
        grant_type = request.params.get("grant_type")
        if grant_type is None:
            raise InvalidRequest("grant_type is required")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType("this server does not support that grant_type")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient("the client may not use this grant_type")
        request = await self._bind_dpop(request, client)
        if request.dpop_jkt is None:  # one binding per token: a DPoP proof was this request's
            x5t_s256 = certificate_binding(client, request.certificate)
            if x5t_s256 != request.x5t_s256:
                request = replace(request, x5t_s256=x5t_s256)
        profile = self._profiles.for_client(client)
        if profile.sender_constrained and request.dpop_jkt is None and request.x5t_s256 is None:
            # Refused before the grant runs: a code or refresh token is not spent on it.
            raise InvalidRequest(
                f"the {profile.name} profile issues only sender-constrained tokens: "
                "send a DPoP proof or a bound TLS client certificate"
            )
        response = await handler.handle(request, client)
        nonce = self.dpop.nonce() if self.dpop else None
        if nonce is not None:
            response.headers["dpop-nonce"] = nonce  # RFC 9449 §8.2: the next nonce, ahead of time
        return response

    async def _bind_dpop(self, request: TokenRequest, client: ClientRecord) -> TokenRequest:
        """RFC 9449 §5: a valid proof binds what this request mints to the proof's key."""
        if request.dpop is None:
            if client.dpop_required:
                raise DpopProofRefused(InvalidDpopProof("this client must send a DPoP proof"))
            return request
        if self.dpop is None:
            raise DpopProofRefused(InvalidDpopProof("DPoP is not enabled on this server"))
        try:
            proof = await self.dpop.verify(request.dpop, method="POST", url=self._token_url)
        except JoseError as exc:
            raise DpopProofRefused(self.dpop.refusal(exc)) from None
        profile = self._profiles.for_client(client)
        refusal = profile.alg_refusal(proof.alg, "DPoP proofs")
        if refusal is not None:
            raise DpopProofRefused(InvalidDpopProof(refusal))
        return replace(request, dpop_jkt=proof.jkt)
