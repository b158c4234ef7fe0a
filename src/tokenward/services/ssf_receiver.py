"""The Shared Signals receiver: SETs (RFC 8417) pushed to us (RFC 8935) by the transmitters the
operator configured, verified and acted on.

A SET is accepted only if: it is a compact JWS with `typ` secevent+jwt; its `iss` is a
configured transmitter and its signature verifies with that transmitter's keys (fetched from its
`jwks_uri`, cached) in the one algorithm pinned for it; its `aud` names us; its `iat` is no
older than `max_age` and not in the future (beyond `leeway`); it has a `jti`; and `events` is a
non-empty object. Anything else is refused with the RFC 8935 §2.3 error code. A SET whose jti
was acted on already (remembered in the replay cache, shared by every node, until the SET would
be too old anyway), or is being acted on, is acknowledged and not acted on again; one whose
action failed is forgotten, so the transmitter's retry acts.

Acting (docs/continuous-access.md): the subject (`sub_id`, RFC 9493) names one of our users as
`iss_sub` (its `sub` our user id), `opaque` (our user id) or `email` (the username), or a
`complex` subject's `user`. session-revoked and credential-change end every session of the user
and revoke every token issued to them; token-claims-change revokes their tokens (new ones carry
the new claims); an assurance-level-change that decreases does what session-revoked does. A SET
about a subject we do not know is accepted and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from tokenward.core.errors import JoseError
from tokenward.core.ports import UserStore
from tokenward.oauth.client_auth import ReplayCache
from tokenward.oauth.exchange_tokens import IssuerKeys
from tokenward.oauth.ssf.events import CAEP, SET_TYPE
from tokenward.tokens.jws import UnknownKeyError, parse_compact, payload_object, verify_compact

log = structlog.get_logger(__name__)
MAX_SET_BYTES = 16 * 1024
MAX_EVENTS = 8
MAX_JTI = 256
# How long a SET being acted on is held as pending; past it, a crashed node's claim lapses.
ACTION_LEASE = 60.0


class SetRefused(Exception):
    """RFC 8935 §2.3: `err` is one of invalid_request, invalid_key, invalid_issuer,
    invalid_audience, authentication_failed, access_denied."""

    def __init__(self, err: str, description: str) -> None:
        super().__init__(description)
        self.err = err
        self.description = description


@dataclass(frozen=True, slots=True)
class Transmitter:
    issuer: str
    keys: IssuerKeys
    algorithm: str  # pinned: a key of this transmitter for any other algorithm is refused


class SubjectActions(Protocol):
    """What the receiver does to a user: `services.users.UserAdmin` and `Watermarks` do it."""

    async def force_logout(self, user_id: str) -> dict[str, Any]: ...


class TokenRevoker(Protocol):
    async def revoke(self, *, subject: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Received:
    jti: str
    issuer: str
    events: tuple[str, ...]
    user_id: str | None  # None: a subject we do not know
    action: str  # what was done: logout, revoke_tokens, none; duplicate: acted on already


class SetReceiver:
    def __init__(
        self,
        transmitters: Sequence[Transmitter],
        audiences: frozenset[str],
        replay: ReplayCache,
        users: UserStore,
        sessions: SubjectActions,
        tokens: TokenRevoker,
        *,
        max_age: float = 3600.0,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transmitters = {item.issuer: item for item in transmitters}
        self._audiences = audiences
        self._replay = replay
        self._users = users
        self._sessions = sessions
        self._tokens = tokens
        self._max_age = max_age
        self._leeway = leeway
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._transmitters)

    async def receive(self, token: str) -> Received:
        claims, transmitter = await self._verified(token)
        now = self._clock()
        self._check_audience(claims)
        issued_at = claims.get("iat")
        if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
            raise SetRefused("invalid_request", "iat is missing")
        if issued_at > now + self._leeway or issued_at < now - self._max_age:
            raise SetRefused("invalid_request", "iat is outside the accepted window")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
            raise SetRefused("invalid_request", "jti is missing")
        events = claims.get("events")
        if not isinstance(events, dict) or not 0 < len(events) <= MAX_EVENTS:
            raise SetRefused("invalid_request", f"events must hold 1 to {MAX_EVENTS} events")
        # Per transmitter, digested: one transmitter's jti cannot shadow another's.
        key = (
            "set:"
            + hashlib.sha256(
                f"{transmitter.issuer}\0{jti}".encode("utf-8", "surrogatepass")
            ).hexdigest()
        )
        # Claimed as pending for a short lease, so of two concurrent deliveries one acts; kept
        # until the SET is too old only once the action succeeded. A failed action releases
        # the claim (and the error reaches the transmitter as a 5xx), so its retry is acted on;
        # a node that dies mid-action lets the lease lapse. An action that outlives its lease
        # may be repeated by a retry: ending sessions and revoking a subject are idempotent.
        if not await self._replay.first_use(key, now + ACTION_LEASE):
            log.info("ssf_set_duplicate", iss=transmitter.issuer, jti=jti[:64])
            return Received(jti, transmitter.issuer, tuple(events), None, "duplicate")
        try:
            user_id = await self._user(claims, transmitter.issuer)
            action = await self._act(user_id, events) if user_id is not None else "none"
        except BaseException:
            # Released, so the transmitter's retry acts; if storage is down even for this, the
            # lease lapses on its own.
            with contextlib.suppress(Exception):
                await self._replay.hold(key, now)
            raise
        await self._replay.hold(key, issued_at + self._max_age + self._leeway)
        log.info(
            "ssf_set_received",
            iss=transmitter.issuer,
            jti=jti[:64],
            events=list(events),
            known_subject=user_id is not None,
            action=action,
        )
        return Received(jti, transmitter.issuer, tuple(events), user_id, action)

    async def _verified(self, token: str) -> tuple[dict[str, Any], Transmitter]:
        if len(token) > MAX_SET_BYTES:
            raise SetRefused("invalid_request", "the SET is too large")
        try:
            unverified = parse_compact(token)
            claims = payload_object(unverified)
        except JoseError:
            raise SetRefused("invalid_request", "not a signed JWT") from None
        if unverified.header.get("typ") != SET_TYPE:
            raise SetRefused("invalid_request", f"the typ header must be {SET_TYPE}")
        issuer = claims.get("iss")
        transmitter = self._transmitters.get(issuer) if isinstance(issuer, str) else None
        if transmitter is None:
            raise SetRefused("invalid_issuer", "the issuer is not a configured transmitter")
        await transmitter.keys.refresh(unknown_kid=False)  # no-op unless past its max-age
        for attempt in (1, 2):
            try:
                jws, key = verify_compact(token, transmitter.keys.get)
            except UnknownKeyError:
                if attempt == 2 or not await transmitter.keys.refresh(unknown_kid=True):
                    raise SetRefused("invalid_key", "no key of the transmitter matches") from None
                continue
            except JoseError:
                raise SetRefused("invalid_key", "the signature does not verify") from None
            if key.alg.name != transmitter.algorithm:
                raise SetRefused("invalid_key", "signed in an algorithm not pinned for it")
            return payload_object(jws), transmitter
        raise SetRefused("invalid_key", "no key of the transmitter matches")  # loop returns

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or self._audiences.isdisjoint(
            item for item in named if isinstance(item, str)
        ):
            raise SetRefused("invalid_audience", "the SET is not addressed to us (aud)")

    async def _user(self, claims: Mapping[str, Any], issuer: str) -> str | None:
        subject = claims.get("sub_id")
        if subject is None:  # RFC 8417-era SETs name the subject inside the event
            for event in claims["events"].values():
                if isinstance(event, dict) and isinstance(event.get("subject"), dict):
                    subject = event["subject"]
                    break
        if isinstance(subject, dict) and subject.get("format") == "complex":
            subject = subject.get("user")
        if not isinstance(subject, dict):
            return None
        fmt = subject.get("format")
        if fmt in ("iss_sub", "opaque"):
            value = subject.get("sub" if fmt == "iss_sub" else "id")
            if isinstance(value, str) and len(value) <= 256:
                user = await self._users.get(value)
                return user.user_id if user is not None else None
        if fmt == "email":
            email = subject.get("email")
            if isinstance(email, str) and len(email) <= 256:
                user = await self._users.by_username(email)
                return user.user_id if user is not None else None
        return None

    async def _act(self, user_id: str, events: Mapping[str, Any]) -> str:
        logout = revoke = False
        for event_type, event in events.items():
            if event_type in (CAEP + "session-revoked", CAEP + "credential-change"):
                logout = True
            elif event_type == CAEP + "token-claims-change":
                revoke = True
            elif event_type == CAEP + "assurance-level-change":
                direction = event.get("change_direction") if isinstance(event, dict) else None
                logout = logout or direction == "decrease"
        if logout:
            await self._sessions.force_logout(user_id)  # ends sessions, revokes tokens
            return "logout"
        if revoke:
            await self._tokens.revoke(subject=user_id)
            return "revoke_tokens"
        return "none"
