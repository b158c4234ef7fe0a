"""Authorization code + PKCE for desktop apps, redirected to a loopback listener (RFC 8252).

We listen on 127.0.0.1 (§7.3: the IP literal, not `localhost`, which may resolve elsewhere), on
an ephemeral port unless told one, open the system browser, and take the one redirect that comes
back. The response must carry our `state` (CSRF) and, where the server says it sends one, its
exact `iss` (RFC 9207 §2.4: mix-up defence) before the code is exchanged with the PKCE verifier
(RFC 7636, S256 only).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tokenward.client._flow import Flow, blocking
from tokenward.client.discovery import ServerMetadata
from tokenward.client.errors import AuthorizationError, DiscoveryError, safe_text
from tokenward.client.token_source import TokenSource
from tokenward.client.tokens import TokenSet
from tokenward.tokens.b64 import b64url_encode

DEFAULT_TIMEOUT = 300.0
DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Signed in</title>"
    b"<p>You can close this window and return to the application.</p>"
)


def open_in_browser(url: str) -> None:
    """The default: the system browser, and the URL on stderr should none open."""
    if not webbrowser.open(url):
        print(f"Open this address in your browser to sign in:\n{url}", file=sys.stderr)


class _Server(HTTPServer):
    receiver: LoopbackReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        receiver = self.server.receiver
        if target.path != receiver.path or receiver.done.is_set():
            self.send_error(404)
            return
        pairs = parse_qsl(target.query, keep_blank_values=True, max_num_fields=32)
        receiver.params = dict(pairs) if len(dict(pairs)) == len(pairs) else {"error": "repeated"}
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("cache-control", "no-store")
        self.send_header("content-length", str(len(DONE_PAGE)))
        self.end_headers()
        self.wfile.write(DONE_PAGE)
        receiver.done.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the authorization code: it is never logged


class LoopbackReceiver:
    """One redirect on 127.0.0.1; bound on creation so the redirect URI's port is known."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/callback") -> None:
        self.path = path
        self.params: dict[str, str] | None = None
        self.done = threading.Event()
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as exc:
            raise AuthorizationError(
                f"cannot listen on {host}:{port} for the sign-in redirect", error="listen_failed"
            ) from exc
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def wait(self, timeout: float) -> dict[str, str]:
        if not self.done.wait(timeout) or self.params is None:
            raise AuthorizationError("no sign-in came back in time", error="timeout")
        return self.params

    def close(self) -> None:
        self.done.set()  # wakes a waiter whose task was cancelled
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class AuthorizationCodePKCE(TokenSource):
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        open_browser: Callable[[str], object] = open_in_browser,
        host: str = "127.0.0.1",
        port: int = 0,
        redirect_path: str = "/callback",
        timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        options.setdefault("scope", "openid")
        super().__init__(issuer, client_id, client_secret, **options)
        self._open_browser = open_browser
        self._host, self._port, self._path = host, port, redirect_path
        self._timeout = timeout

    def login(self, *, acr_values: str | None = None, max_age: int | None = None) -> TokenSet:
        """Sign in in the browser. `acr_values`, `max_age` (OIDC Core §3.1.2.1): what a
        `StepUpRequired` asked for, to get a token from a stronger or fresher sign-in."""
        return self.http.run(self._login_flow(acr_values, max_age))

    async def alogin(
        self, *, acr_values: str | None = None, max_age: int | None = None
    ) -> TokenSet:
        return await self.http.arun(self._login_flow(acr_values, max_age))

    def _login_flow(
        self, acr_values: str | None = None, max_age: int | None = None
    ) -> Flow[TokenSet]:
        metadata = yield from self.discovery.flow()
        if metadata.authorization_endpoint is None:
            raise DiscoveryError("the issuer offers no authorization endpoint")
        verifier = secrets.token_urlsafe(64)  # RFC 7636 §4.1: 43-128 characters
        state = secrets.token_urlsafe(32)
        # OIDC Core §3.1.2.1: binds the ID token to this sign-in (checked in id_tokens.py).
        nonce = secrets.token_urlsafe(32)
        receiver = LoopbackReceiver(self._host, self._port, self._path)
        try:
            url = self._authorization_url(metadata, receiver.redirect_uri, verifier, state, nonce)
            step_up = {"acr_values": acr_values, "max_age": max_age}
            extra = {name: str(value) for name, value in step_up.items() if value is not None}
            if extra:
                url += "&" + urlencode(extra)
            yield from blocking(lambda: self._open_browser(url))
            params = yield from blocking(lambda: receiver.wait(self._timeout))
        finally:
            receiver.close()
        code = self._checked_code(params, state, metadata)
        exchange = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": receiver.redirect_uri,
            "code_verifier": verifier,
        }
        return (yield from self._token_flow(exchange, self.dpop, nonce=nonce))

    def _authorization_url(
        self,
        metadata: ServerMetadata,
        redirect_uri: str,
        verifier: str,
        state: str,
        nonce: str,
    ) -> str:
        challenge = b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scope or "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if self.dpop is not None:
            query["dpop_jkt"] = self.dpop.thumbprint  # RFC 9449 §10: the code is bound too
        endpoint = metadata.authorization_endpoint or ""
        separator = "&" if urlsplit(endpoint).query else "?"
        return endpoint + separator + urlencode(query)

    @staticmethod
    def _checked_code(params: dict[str, str], state: str, metadata: ServerMetadata) -> str:
        if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
            raise AuthorizationError("the response's state is not this sign-in's (CSRF?)")
        iss = params.get("iss")
        if iss is None and metadata.iss_parameter_supported:
            raise AuthorizationError("the response lacks the iss the server promises (RFC 9207)")
        if iss is not None and iss != metadata.issuer:
            raise AuthorizationError("the response comes from another issuer (mix-up?)")
        if "error" in params:
            error = safe_text(params["error"])[:64]
            raise AuthorizationError(f"the sign-in failed: {error}", error=error)
        code = params.get("code")
        if not code:
            raise AuthorizationError("the response carries no code")
        return code
