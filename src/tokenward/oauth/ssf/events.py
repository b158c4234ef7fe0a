"""Security Event Tokens (RFC 8417) carrying CAEP events (OpenID CAEP 1.0) and the SSF 1.0
verification event: their claims, built from a `core.signals.SecuritySignal`.

Subjects are RFC 9493 subject identifiers in the SSF 1.0 `sub_id` claim: `iss_sub` for a user,
`complex` with a `user` and an `opaque` `session` for one session of a user.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from tokenward.core.signals import (
    ASSURANCE_LEVEL_CHANGE,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    TOKEN_CLAIMS_CHANGE,
    SecuritySignal,
)

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
EVENT_TYPE = {
    kind: CAEP + kind
    for kind in (
        SESSION_REVOKED,
        CREDENTIAL_CHANGE,
        TOKEN_CLAIMS_CHANGE,
        ASSURANCE_LEVEL_CHANGE,
    )
}
# What a stream may ask for: the CAEP events we emit and the SSF verification event.
EVENTS_SUPPORTED = (*EVENT_TYPE.values(), VERIFICATION)
SET_TYPE = "secevent+jwt"  # RFC 8417 §2.3


def user_subject(issuer: str, subject: str) -> dict[str, str]:
    return {"format": "iss_sub", "iss": issuer, "sub": subject}


def signal_subject(issuer: str, signal: SecuritySignal) -> dict[str, Any]:
    user = user_subject(issuer, signal.subject)
    if signal.session_id is None:
        return user
    return {
        "format": "complex",
        "user": user,
        "session": {"format": "opaque", "id": signal.session_id},
    }


def event_claims(signal: SecuritySignal) -> dict[str, Any]:
    """The CAEP event object (the value under its event type in `events`)."""
    event: dict[str, Any] = {
        "event_timestamp": int(signal.time),
        "initiating_entity": signal.initiator,
    }
    if signal.reason:
        event["reason_admin"] = {"en": signal.reason}
    event.update(dict(signal.details))
    return event


def set_claims(
    issuer: str, audience: str, signal: SecuritySignal, now: float, txn: str | None = None
) -> dict[str, Any]:
    """The claims set of one SET for one stream's audience."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "jti": secrets.token_urlsafe(16),
        "iat": int(now),
        "sub_id": signal_subject(issuer, signal),
        "events": {EVENT_TYPE[signal.kind]: event_claims(signal)},
    }
    if txn is not None:
        claims["txn"] = txn  # ties together the SETs of one change (RFC 8417 §2.2)
    return claims


def verification_claims(
    issuer: str, audience: str, stream_id: str, state: str | None, now: float
) -> dict[str, Any]:
    """SSF 1.0 §8.1.4: the subject is the stream itself."""
    event: dict[str, Any] = {} if state is None else {"state": state}
    return {
        "iss": issuer,
        "aud": audience,
        "jti": secrets.token_urlsafe(16),
        "iat": int(now),
        "sub_id": {"format": "opaque", "id": stream_id},
        "events": {VERIFICATION: event},
    }


def event_types(claims: Mapping[str, Any]) -> list[str]:
    events = claims.get("events")
    return list(events) if isinstance(events, dict) else []
