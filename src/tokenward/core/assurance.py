"""Authentication assurance: the ordered `acr` levels this server issues and the `amr` each
implies (RFC 8176), so ID tokens, access tokens and introspection say how the user signed in,
and a client or a resource server can ask for more (OIDC Core §3.1.2.1 acr_values, RFC 9470).

The levels are ordered: a session at a higher level satisfies a request for a lower one.
"""

from __future__ import annotations

PWD = "urn:tokenward:acr:pwd"  # a password
MFA = "urn:tokenward:acr:mfa"  # a password and a one-time code (TOTP or a recovery code)
PHR = "urn:tokenward:acr:phr"  # a passkey with user verification: phishing-resistant
LEVELS = (PWD, MFA, PHR)  # weakest first
# RFC 8176 §2: pwd password, otp one-time password, hwk proof of possession of a hardware key,
# user a user-presence (here: verification) test.
TOTP = "totp"  # the second factors, and the level each reaches with the password
PASSKEY = "passkey"
_REACHES = {TOTP: MFA, PASSKEY: PHR}
_AMR = {PWD: ("pwd",), MFA: ("pwd", "otp"), PHR: ("hwk", "user")}


def rank(acr: str | None) -> int:
    """The level's place in LEVELS; -1 for none or a value this server never issues."""
    return LEVELS.index(acr) if acr in LEVELS else -1


def satisfies(acr: str | None, required: str | None) -> bool:
    return required is None or rank(acr) >= rank(required)


def amr_of(acr: str | None) -> tuple[str, ...] | None:
    """The methods behind a level of ours; None for other values (an exchanged token's)."""
    return _AMR.get(acr) if acr is not None else None


def requested(acr_values: str | None) -> str | None:
    """The weakest of our levels among `acr_values` (any of them will do, so the weakest is
    what must be met); None when it names none of ours."""
    known = [value for value in (acr_values or "").split() if value in LEVELS]
    return min(known, key=LEVELS.index) if known else None


def strongest(*levels: str | None) -> str | None:
    """The highest of the given levels (None when none is set)."""
    known = [level for level in levels if level in LEVELS]
    return max(known, key=LEVELS.index) if known else None


def best_reachable(methods: frozenset[str]) -> str:
    """The highest level a user with these second factors can sign in at."""
    return strongest(PWD, *(_REACHES[method] for method in methods if method in _REACHES)) or PWD


def floor_of(methods: frozenset[str]) -> str | None:
    """A user who set up a second factor must use it: no password-only sign-in for them."""
    return MFA if any(method in _REACHES for method in methods) else None


def can_reach(methods: frozenset[str], minimum: str | None) -> bool:
    """Whether a user with these second factors can meet a client's minimum at all."""
    return minimum is None or rank(best_reachable(methods)) >= rank(minimum)


def target(methods: frozenset[str], minimum: str | None, acr_values: str | None) -> str | None:
    """The level a sign-in must reach: the strongest of the client's minimum, the user's floor
    and the `acr_values` asked for, where the user can reach them (they are a request, OIDC Core
    §3.1.2.1: met as far as they can be); None when nothing is asked. A minimum the user
    cannot reach is the caller's to refuse first (`can_reach`)."""
    must = strongest(minimum, floor_of(methods))
    wanted = strongest(must, requested(acr_values))
    return wanted if rank(best_reachable(methods)) >= rank(wanted) else must
