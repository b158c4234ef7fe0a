"""RP-initiated logout (RP-Initiated Logout 1.0): whose ID token the hint is, where the browser
may go afterwards, and ending the session with every token issued under it."""

from __future__ import annotations

from collections.abc import Callable

from tokenward.core.ports import ClientStore
from tokenward.core.records import Revocation, RevocationKind
from tokenward.oauth.authorize import redirect_to
from tokenward.oauth.logout import IdTokenHint, read_id_token_hint
from tokenward.oauth.sessions import SessionManager
from tokenward.services.revoking import RevocationWriter
from tokenward.tokens.jws import KeyLookup


class Logout:
    """`keep`: how long a session watermark must outlive its tokens (the refresh token lifetime
    plus the longest access token lifetime)."""

    def __init__(
        self,
        clients: ClientStore,
        keys: KeyLookup,
        issuer: str,
        sessions: SessionManager,
        revocations: RevocationWriter,
        keep: float,
        clock: Callable[[], float],
    ) -> None:
        self._clients = clients
        self._keys = keys
        self._issuer = issuer
        self._sessions = sessions
        self._revocations = revocations
        self._keep = keep
        self._clock = clock

    async def id_token_hint(self, value: str | None) -> IdTokenHint | None:
        """The hint if it is an ID token of ours for a known client; ValueError if not ours."""
        if value is None:
            return None
        hint = read_id_token_hint(value, self._keys, self._issuer)
        if hint is None or await self._clients.get(hint.client_id) is None:
            return None  # another kind of token, or for no client we know: proves nothing
        return hint

    async def post_logout_target(
        self, params: dict[str, str], hint: IdTokenHint | None
    ) -> tuple[str | None, str | None]:
        """(the client, where to send the browser afterwards); ValueError if that is not
        allowed."""
        uri = params.get("post_logout_redirect_uri")
        client_id = params.get("client_id")
        if hint is not None:
            if client_id is not None and client_id != hint.client_id:  # §2: they must agree
                raise ValueError("The id_token_hint was issued to another application.")
            client_id = hint.client_id
        if uri is None:
            return client_id, None
        client = await self._clients.get(client_id) if client_id else None
        if client is None or uri not in client.post_logout_redirect_uris:  # exact match
            raise ValueError("The post_logout_redirect_uri is not registered for this application.")
        return client_id, redirect_to(uri, {"state": params.get("state")})

    async def end_session(self, session_id: str) -> None:
        record = await self._sessions.end(session_id)
        if record is None:
            return
        now = self._clock()
        # Every token and refresh family carrying this sid stops working (watermark).
        await self._revocations.revoke(
            Revocation(RevocationKind.SESSION, session_id, now, now + self._keep)
        )
