"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): which `id_token_hint` proves
that the relying party of *this* browser session asked to end it.

Anything the server signs verifies with its keys (access tokens, introspection responses, ID
tokens of every user), so a signature alone proves nothing about the session. A hint counts only
if it is an ID token we issued (header `typ` JWT, `iss` exactly ours, one client as `aud`, no
access-token claims) whose `sub` and `sid` are the session's. An expired one still counts (§2:
the OP SHOULD accept it while the session lasts); the `sid` match bounds it to that session.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenward.core.errors import JoseError
from tokenward.oauth.sessions import ActiveSession
from tokenward.tokens.jws import MAX_COMPACT_LENGTH, KeyLookup, payload_object, verify_compact

MAX_HINT_LENGTH = MAX_COMPACT_LENGTH  # an ML-DSA-87 ID token is ~6 KB
# RFC 9068 §2.2 claims an access token carries and an ID token does not.
_ACCESS_TOKEN_CLAIMS = ("client_id", "scope")


@dataclass(frozen=True, slots=True)
class IdTokenHint:
    client_id: str  # the ID token's audience
    subject: str
    session_id: str | None


def read_id_token_hint(hint: str, keys: KeyLookup, issuer: str) -> IdTokenHint | None:
    """The hint's client, subject and sid if it is an ID token this issuer signed; None if it is
    another token of ours; ValueError if we did not sign it (bad input: the RP sent garbage)."""
    if len(hint) > MAX_HINT_LENGTH:
        raise ValueError("The id_token_hint is not one of ours.")
    try:
        jws, _ = verify_compact(hint, keys)
        claims = payload_object(jws)
    except JoseError:
        raise ValueError("The id_token_hint is not one of ours.") from None
    if claims.get("iss") != issuer:
        raise ValueError("The id_token_hint is not one of ours.")
    if jws.header.get("typ") != "JWT" or any(name in claims for name in _ACCESS_TOKEN_CLAIMS):
        return None  # an access token (at+jwt, RFC 9068) or an introspection response (RFC 9701)
    aud, sub, sid = claims.get("aud"), claims.get("sub"), claims.get("sid")
    if not isinstance(aud, str) or not isinstance(sub, str) or not aud or not sub:
        return None
    return IdTokenHint(aud, sub, sid if isinstance(sid, str) else None)


def ends(hint: IdTokenHint | None, session: ActiveSession) -> bool:
    """Whether the hint was issued in this very session (same user, same `sid`)."""
    return (
        hint is not None
        and hint.session_id is not None
        and hint.subject == session.user.user_id
        and hint.session_id == session.record.session_id
    )
