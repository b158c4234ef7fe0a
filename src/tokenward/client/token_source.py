"""Token sources: how a client gets and renews tokens at one issuer's token endpoint.

Every source authenticates the same way (RFC 6749 §2.3: client_secret_basic with form-encoded
id and secret, client_secret_post, or a public client's bare client_id), may prove a DPoP key
(RFC 9449 §5) and retries exactly once when the server asks for a nonce (§8). Each exchange is a
flow (see `_flow`), run by `fetch`/`refresh` in threads and by `afetch`/`arefresh` in tasks.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, Self
from urllib.parse import quote_plus

import httpx

from tokenward.client._flow import Flow, Http, send
from tokenward.client.discovery import Discovery
from tokenward.client.dpop import DpopKey
from tokenward.client.errors import ClientError, LoginRequired, OAuthResponseError, safe_text
from tokenward.client.id_tokens import DEFAULT_LEEWAY, IdTokenVerifier
from tokenward.client.nonces import NonceCache
from tokenward.client.tls import ClientCertificate
from tokenward.client.tokens import TokenSet, parse_token_response

AuthMethod = Literal[
    "client_secret_basic",
    "client_secret_post",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "none",
]
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
SECRET_PARAMS = ("refresh_token", "code", "code_verifier", "device_code", "client_secret")


def error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


class TokenSource:
    """One client at one issuer. Subclasses say how a first token is obtained."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        scope: str | None = None,
        dpop: DpopKey | None = None,
        auth_method: AuthMethod | None = None,
        http: Http | None = None,
        discovery: Discovery | None = None,
        clock: Callable[[], float] = time.time,
        certificate: ClientCertificate | None = None,
        id_token_leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        """`certificate`: a TLS client certificate to present (RFC 8705): without a secret
        the client authenticates with it (`tls_client_auth` unless `auth_method` says
        `self_signed_tls_client_auth`), and the server may bind the tokens to it; requests go
        to the metadata's `mtls_endpoint_aliases` when it has them. Every ID token a
        response carries is verified (`id_tokens.IdTokenVerifier`, `id_token_leeway` seconds
        of clock skew) before the tokens are handed out."""
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.dpop = dpop
        default: AuthMethod = (
            "client_secret_basic"
            if client_secret
            else "tls_client_auth"
            if certificate is not None
            else "none"
        )
        self.auth_method: AuthMethod = auth_method or default
        if (self.auth_method in SECRET_METHODS) != (client_secret is not None):
            raise ValueError("a client secret goes with client_secret_basic or _post only")
        if self.auth_method.endswith("tls_client_auth") and certificate is None:
            raise ValueError(f"{self.auth_method} needs the client certificate (certificate=)")
        if certificate is not None and http is not None:
            raise ValueError("give the certificate or your own Http, not both")
        self.certificate = certificate
        self.http = http or Http(certificate=certificate)
        self.discovery = discovery or Discovery(issuer)
        self.clock = clock
        self.nonces = NonceCache()
        self.id_tokens = IdTokenVerifier(
            issuer, client_id, leeway=id_token_leeway, clock=self.clock
        )

    def __repr__(self) -> str:
        jkt = self.dpop.thumbprint if self.dpop else None
        return (
            f"{type(self).__name__}(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"auth_method={self.auth_method!r}, dpop_jkt={jkt!r})"
        )

    @property
    def store_key(self) -> str:
        """Where a store keeps this client's tokens."""
        return f"{self.issuer}#{self.client_id}"

    # --- public, sync and async ------------------------------------------------------------
    def fetch(self) -> TokenSet:
        """A first token set without a user at hand; interactive sources raise LoginRequired."""
        return self.http.run(self._fetch_flow())

    async def afetch(self) -> TokenSet:
        return await self.http.arun(self._fetch_flow())

    def refresh(self, tokens: TokenSet) -> TokenSet:
        """A newer set. Raises LoginRequired when the grant is gone: the user must sign in."""
        return self.http.run(self._refresh_flow(tokens))

    async def arefresh(self, tokens: TokenSet) -> TokenSet:
        return await self.http.arun(self._refresh_flow(tokens))

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.http.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- flows -----------------------------------------------------------------------------
    def _fetch_flow(self) -> Flow[TokenSet]:
        raise LoginRequired("there are no tokens yet: sign in first")

    def _refresh_flow(self, tokens: TokenSet) -> Flow[TokenSet]:
        if not tokens.refresh_token:
            return self._fetch_flow()
        return self._refresh_grant(tokens, tokens.refresh_token)

    def _refresh_grant(self, tokens: TokenSet, refresh_token: str) -> Flow[TokenSet]:
        params = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            # A bound refresh token needs the key it is bound to (RFC 9449 §5).
            newer = yield from self._token_flow(
                params, tokens.dpop_key or self.dpop, previous=tokens.id_token_claims
            )
        except OAuthResponseError as exc:
            if exc.error == "invalid_grant":  # revoked, expired, reused: only a sign-in helps
                raise LoginRequired(
                    "the refresh token was refused (revoked, expired or already used)",
                    error=exc.error,
                ) from None
            raise
        return tokens.successor(newer)

    def _token_flow(
        self,
        params: Mapping[str, str],
        dpop_key: DpopKey | None,
        *,
        nonce: str | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> Flow[TokenSet]:
        """`nonce`: the one the sign-in sent, which its ID token must carry; `previous`: the
        claims of the ID token a refresh's new one succeeds."""
        metadata = yield from self.discovery.flow()
        endpoint = metadata.token_endpoint
        if self.certificate is not None and metadata.mtls_token_endpoint is not None:
            endpoint = metadata.mtls_token_endpoint
        response = yield from self._post(endpoint, params, dpop_key)
        body = _json_or_none(response)
        if response.status_code != 200:  # RFC 6749 §5.1: success is exactly 200
            raise self._error(response, body, params)
        tokens = parse_token_response(
            body,
            now=self.clock(),
            dpop_key=dpop_key,
            issuer=self.issuer,
            client_id=self.client_id,
        )
        if tokens.id_token is None:
            return tokens
        claims = yield from self.id_tokens.flow(
            tokens.id_token,
            metadata,
            nonce=nonce,
            access_token=tokens.access_token,
            code=params.get("code"),
            previous=previous,
        )
        return replace(tokens, id_token_claims=claims)

    def _post(
        self, url: str, params: Mapping[str, str], dpop_key: DpopKey | None
    ) -> Flow[httpx.Response]:
        response = yield from send(self._request(url, params, dpop_key))
        fresh = self.nonces.remember(response)
        if dpop_key is not None and fresh and error_code(response) == "use_dpop_nonce":
            response = yield from send(self._request(url, params, dpop_key))  # RFC 9449 §8: once
            self.nonces.remember(response)
        return response

    def _request(
        self, url: str, params: Mapping[str, str], dpop_key: DpopKey | None
    ) -> httpx.Request:
        form = dict(params)
        headers = {"accept": "application/json"}
        if self.auth_method == "client_secret_basic" and self._secret is not None:
            # RFC 6749 §2.3.1: both halves form-encoded before Basic encoding.
            pair = f"{quote_plus(self.client_id, safe='')}:{quote_plus(self._secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = self.client_id
            if self.auth_method == "client_secret_post" and self._secret is not None:
                form["client_secret"] = self._secret
        if dpop_key is not None:
            url_nonce = self.nonces.get(httpx.URL(url))
            headers["dpop"] = dpop_key.proof("POST", url, nonce=url_nonce)
        return httpx.Request("POST", url, data=form, headers=headers)

    def _error(
        self, response: httpx.Response, body: object, params: Mapping[str, str]
    ) -> ClientError:
        error, description = "invalid_response", ""
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            error = body["error"]
            description = str(body.get("error_description") or "")
        sent = [params.get(name) for name in SECRET_PARAMS] + [self._secret]
        return OAuthResponseError(
            error, safe_text(description, sent), status_code=response.status_code
        )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class ClientCredentials(TokenSource):
    """A service acting for itself (RFC 6749 §4.4): a new token whenever the old one ends."""

    def __init__(
        self, issuer: str, client_id: str, client_secret: str | None = None, **options: Any
    ) -> None:
        """A secret, or `certificate=` (mTLS, RFC 8705): one of them authenticates."""
        if client_secret is None and options.get("certificate") is None:
            raise ValueError("client credentials need a client secret or a client certificate")
        super().__init__(issuer, client_id, client_secret, **options)

    def _fetch_flow(self) -> Flow[TokenSet]:
        params = {"grant_type": "client_credentials"}
        if self.scope:
            params["scope"] = self.scope
        return self._token_flow(params, self.dpop)


class RefreshToken(TokenSource):
    """Starts from a refresh token obtained elsewhere. It is spent on the first fetch and then
    forgotten: refresh tokens rotate (OAuth 2.1 §4.3.1), and presenting a spent one makes the
    server revoke the whole grant. Pair it with a store so the successor outlives the process."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        refresh_token: str,
        client_secret: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(issuer, client_id, client_secret, **options)
        self._initial: str | None = refresh_token

    def _fetch_flow(self) -> Flow[TokenSet]:
        initial = self._initial
        if initial is None:
            raise LoginRequired("the initial refresh token was spent; its successor is stored")
        # A placeholder set whose refresh token is the initial one: a server that does not
        # rotate then leaves it in place (RFC 6749 §6), one that does replaces it.
        seed = TokenSet("-", "Bearer", 0.0, refresh_token=initial, dpop_key=self.dpop)
        return self._spend(seed, initial)

    def _spend(self, seed: TokenSet, initial: str) -> Flow[TokenSet]:
        try:
            tokens = yield from self._refresh_grant(seed, initial)
        except (OAuthResponseError, LoginRequired):
            self._initial = None  # the server saw it and refused it: never send it again
            raise
        # Spent. A transport error above keeps it: the server may not have seen it, and a
        # repeat inside the reuse grace gets the same successor.
        self._initial = None
        return tokens
