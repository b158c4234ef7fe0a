"""Security signals: what the authorization server tells the outside world when a subject's
access changes (continuous access evaluation, docs/continuous-access.md).

Producers call `SignalSink.emit`, which never blocks and never raises (like core.events): the
Shared Signals transmitter and back-channel logout turn each signal into Security Event Tokens
and logout tokens on their own task. Signals carry identifiers and fixed codes only, never a
token or a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# Signal kinds, one per CAEP event type (OpenID CAEP 1.0 §3).
SESSION_REVOKED = "session-revoked"
CREDENTIAL_CHANGE = "credential-change"
TOKEN_CLAIMS_CHANGE = "token-claims-change"
ASSURANCE_LEVEL_CHANGE = "assurance-level-change"
KINDS = (SESSION_REVOKED, CREDENTIAL_CHANGE, TOKEN_CLAIMS_CHANGE, ASSURANCE_LEVEL_CHANGE)

# Who made the change (CAEP §2 `initiating_entity`).
ADMIN, USER, POLICY, SYSTEM = "admin", "user", "policy", "system"


@dataclass(frozen=True, slots=True)
class SecuritySignal:
    """One change to a subject's access. `session_id` None with SESSION_REVOKED means every
    session of the subject. `details` holds the event's own members as (name, value) pairs
    (e.g. ("credential_type", "password")), values plain JSON."""

    kind: str  # one of KINDS
    time: float  # when it happened, epoch seconds
    subject: str  # our user id (the `sub` of the tokens we issue)
    session_id: str | None = None
    initiator: str = SYSTEM
    reason: str = ""  # for the administrator (CAEP `reason_admin`), never user input
    details: tuple[tuple[str, object], ...] = field(default=())


class SignalSink(Protocol):
    def emit(self, signal: SecuritySignal) -> None:
        """Queue the signal; must not block or raise."""
        ...


class NullSignals:
    """No continuous access evaluation configured: signals are dropped."""

    def emit(self, signal: SecuritySignal) -> None:
        return None
