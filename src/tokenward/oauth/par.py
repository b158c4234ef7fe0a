"""The pushed authorization request endpoint (PAR, RFC 9126): the client sends its
authorization request straight to us, authenticated, and gets a `request_uri` to send the
browser with instead.

The request is checked here, all of it and before anything is stored, as /authorize would
check it (redirect URI included, §2.1), so a bad request fails at the client's back channel with
a JSON error rather than in the user's browser. A signed request object (JAR) may be pushed as
`request`; then only its parameters count. A DPoP proof sent along (RFC 9449 §10.1) binds the
code to its key, as `dpop_jkt` does, and the two must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenward.core.client_certs import ClientCertificate
from tokenward.core.errors import InvalidDpopProof, JoseError
from tokenward.core.records import ClientRecord
from tokenward.oauth.authorize import AuthorizationValidator, ErrorPage, RedirectError
from tokenward.oauth.client_auth import ClientAuthenticator
from tokenward.oauth.errors import DpopProofRefused, InvalidRequest, UnauthorizedClient
from tokenward.oauth.request_object import RequestObjects
from tokenward.oauth.request_uri import RequestUris
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.tokens.dpop import DpopProof, DpopVerifier

# What authenticates the client at this endpoint: never part of the stored request.
CLIENT_AUTH = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


@dataclass(frozen=True, slots=True)
class PushRequest:
    pairs: Sequence[tuple[str, str]]  # the form body, repeats and all
    authorization: str | None = None
    dpop: str | None = None
    certificate: ClientCertificate | None = field(default=None, repr=False)  # RFC 8705 clients


class PushedAuthorization:
    def __init__(
        self,
        authenticator: ClientAuthenticator,
        validator: AuthorizationValidator,
        request_objects: RequestObjects,
        uris: RequestUris,
        dpop: DpopVerifier | None,
        par_url: str,
    ) -> None:
        self._authenticator = authenticator
        self._validator = validator
        self._request_objects = request_objects
        self._uris = uris
        self._dpop = dpop
        self._par_url = par_url

    async def push(self, request: PushRequest) -> tuple[dict[str, Any], dict[str, str]]:
        """`{"request_uri", "expires_in"}` (RFC 9126 §2.2) and the response headers, or an
        `OAuthError`."""
        params = _single_params(request.pairs)
        # The proof first: a client told to retry with a DPoP nonce (RFC 9449 §8) sends the
        # same request object again, whose jti must not have been spent on the refused try.
        proof = await self._dpop_proof(request.dpop)
        jkt = proof.jkt if proof is not None else None
        client = await self._authenticator.authenticate(
            params, request.authorization, request.certificate
        )
        profile = self._validator.profiles.for_client(client)
        refusal = profile.alg_refusal(proof.alg, "DPoP proofs") if proof is not None else None
        if refusal is not None:
            raise DpopProofRefused(InvalidDpopProof(refusal))
        if "authorization_code" not in client.grant_types:
            raise UnauthorizedClient("the client may not use the authorization code grant")
        if "request_uri" in params:  # §2.1
            raise InvalidRequest("request_uri is not allowed in a pushed request")
        pairs, signed = await self._parameters(client, request.pairs, params)
        if profile.par_redirect_uri_required and all(name != "redirect_uri" for name, _ in pairs):
            raise InvalidRequest(f"the {profile.name} profile needs redirect_uri in the push")
        if jkt is not None:
            given = [value for name, value in pairs if name == "dpop_jkt"]
            if given and given != [jkt]:  # RFC 9449 §10.1
                raise InvalidRequest("dpop_jkt differs from the DPoP proof's key")
            pairs = [*(pair for pair in pairs if pair[0] != "dpop_jkt"), ("dpop_jkt", jkt)]
        try:
            self._validator.check(client, pairs)
        except ErrorPage as exc:
            raise InvalidRequest(exc.description) from None
        except RedirectError as exc:
            raise exc.error from None
        uri = await self._uris.issue(client.client_id, pairs, signed)
        headers = dict(NO_STORE)
        nonce = self._dpop.nonce() if self._dpop is not None else None
        if nonce is not None:
            headers["dpop-nonce"] = nonce  # RFC 9449 §8.2: the next one, ahead of time
        return {"request_uri": uri, "expires_in": self._uris.lifetime}, headers

    async def _parameters(
        self, client: ClientRecord, pairs: Sequence[tuple[str, str]], params: dict[str, str]
    ) -> tuple[list[tuple[str, str]], bool]:
        if "request" in params:  # RFC 9126 §3: only the request object's parameters count
            return await self._request_objects.verify(client, params["request"]), True
        if self._validator.signed_required(client):
            raise InvalidRequest("this client must send a signed request object (request)")
        kept = [(name, value) for name, value in pairs if name not in CLIENT_AUTH and value]
        if "client_id" not in params:  # authenticated by the Authorization header
            kept.insert(0, ("client_id", client.client_id))
        return kept, False

    async def _dpop_proof(self, proof: str | None) -> DpopProof | None:
        if proof is None:
            return None
        if self._dpop is None:
            raise InvalidRequest("DPoP is not enabled on this server")
        try:
            verified = await self._dpop.verify(proof, method="POST", url=self._par_url)
        except JoseError as exc:
            raise DpopProofRefused(self._dpop.refusal(exc)) from None
        return verified


def _single_params(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The form's parameters for client authentication; every one but `resource` once."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params and name != "resource":
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        if value:
            params[name] = value
    return params
