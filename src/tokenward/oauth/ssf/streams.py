"""Stream management (OpenID Shared Signals Framework 1.0 §8.1): create, read, update, replace
and delete a stream's configuration, its status, its subjects, and verification.

A stream belongs to the client whose access token created it (scope `ssf.manage`), and only
that client sees or changes it. Everything a receiver sends is bounded (counts, lengths) and
checked before it is stored; a refusal is a `StreamError` with the HTTP status to answer.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from tokenward.core.ports import SetQueue, SsfStreams
from tokenward.core.records import SsfStream
from tokenward.oauth.client_uris import UriError, check_uri
from tokenward.oauth.outbound import OutboundRefused, check_url
from tokenward.oauth.ssf.events import EVENTS_SUPPORTED
from tokenward.oauth.ssf.subjects import SubjectError, normalise

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
METHODS = (PUSH, POLL)
STATUSES = ("enabled", "paused", "disabled")
MAX_STREAMS_PER_CLIENT = 5
MAX_SUBJECTS = 1000
MAX_EVENTS_REQUESTED = 16
MAX_DESCRIPTION = 256
MAX_REASON = 256
MAX_AUTHORIZATION = 1024
MAX_STATE = 256
MIN_VERIFICATION_INTERVAL = 5  # seconds between verification events a receiver may ask for
_RECEIVER_FIELDS = ("events_requested", "delivery", "description")
_TRANSMITTER_FIELDS = ("iss", "aud", "events_supported", "events_delivered")


class StreamError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class StreamManager:
    """`poll_url(stream_id)`: our poll endpoint for a stream. `on_enabled(stream)`: called after
    a stream is enabled again (a paused push stream sends what it held). `on_verify(stream,
    state)`: send the verification event. `allow_loopback`: a push endpoint may be plain http
    on loopback (development, tests); otherwise it is https on a public address (oauth.outbound,
    checked again at each delivery)."""

    def __init__(
        self,
        issuer: str,
        streams: SsfStreams,
        queue: SetQueue,
        poll_url: Callable[[str], str],
        on_enabled: Callable[[SsfStream], Awaitable[None]],
        on_verify: Callable[[SsfStream, str | None], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        *,
        allow_loopback: bool = False,
    ) -> None:
        self._issuer = issuer
        self._allow_loopback = allow_loopback
        self._streams = streams
        self._queue = queue
        self._poll_url = poll_url
        self._on_enabled = on_enabled
        self._on_verify = on_verify
        self._clock = clock

    # --- configuration (§8.1.1) -----------------------------------------------------------
    async def create(self, owner: str, body: Mapping[str, Any]) -> dict[str, Any]:
        _only_receiver_fields(body)
        mine = [stream for stream in await self._streams.list_all() if stream.owner == owner]
        if len(mine) >= MAX_STREAMS_PER_CLIENT:
            raise StreamError(409, f"at most {MAX_STREAMS_PER_CLIENT} streams per client")
        stream_id = secrets.token_urlsafe(16)
        method, endpoint, authorization = await self._delivery(body.get("delivery"), stream_id)
        stream = SsfStream(
            stream_id=stream_id,
            owner=owner,
            audience=owner,
            events_requested=_events(body.get("events_requested", [])),
            delivery_method=method,
            endpoint_url=endpoint,
            created_at=self._clock(),
            authorization_header=authorization,
            description=_text(body.get("description", ""), "description", MAX_DESCRIPTION),
        )
        await self._streams.put(stream)
        return self.view(stream)

    async def read(self, owner: str, stream_id: str | None) -> dict[str, Any] | list[Any]:
        if stream_id is None:
            streams = await self._streams.list_all()
            return [self.view(stream) for stream in streams if stream.owner == owner]
        return self.view(await self.owned(owner, stream_id))

    async def update(self, owner: str, body: Mapping[str, Any], *, replace_all: bool) -> Any:
        """PATCH (only the members given change) or PUT (`replace_all`: every receiver-supplied
        member is set, absent ones to their defaults)."""
        stream = await self.owned(owner, _stream_id(body))
        _only_receiver_fields(body, allow_transmitter=True)
        changes: dict[str, Any] = {}
        if replace_all or "events_requested" in body:
            changes["events_requested"] = _events(body.get("events_requested", []))
        if replace_all or "description" in body:
            changes["description"] = _text(
                body.get("description", ""), "description", MAX_DESCRIPTION
            )
        if replace_all or "delivery" in body:
            method, endpoint, authorization = await self._delivery(
                body.get("delivery"), stream.stream_id
            )
            changes.update(
                delivery_method=method, endpoint_url=endpoint, authorization_header=authorization
            )
        stream = replace(stream, **changes)
        await self._streams.put(stream)
        return self.view(stream)

    async def delete(self, owner: str, stream_id: str | None) -> None:
        stream = await self.owned(owner, stream_id)
        await self._streams.delete(stream.stream_id)
        await self._queue.clear(stream.stream_id)

    # --- status (§8.1.2) --------------------------------------------------------------------
    async def status(self, owner: str, stream_id: str | None) -> dict[str, Any]:
        return _status_view(await self.owned(owner, stream_id))

    async def set_status(self, owner: str, body: Mapping[str, Any]) -> dict[str, Any]:
        stream = await self.owned(owner, _stream_id(body))
        status = body.get("status")
        if status not in STATUSES:
            raise StreamError(400, f"status must be one of {', '.join(STATUSES)}")
        reason = _text(body.get("reason", ""), "reason", MAX_REASON)
        was = stream.status
        stream = replace(stream, status=status, reason=reason)
        await self._streams.put(stream)
        if status == "enabled" and was != "enabled":
            await self._on_enabled(stream)
        return _status_view(stream)

    # --- subjects (§8.1.3) ------------------------------------------------------------------
    async def add_subject(self, owner: str, body: Mapping[str, Any]) -> None:
        stream = await self.owned(owner, _stream_id(body))
        key = _subject(body)
        if key in stream.subjects:
            return
        if len(stream.subjects) >= MAX_SUBJECTS:
            raise StreamError(429, f"a stream holds at most {MAX_SUBJECTS} subjects")
        await self._streams.put(replace(stream, subjects=(*stream.subjects, key)))

    async def remove_subject(self, owner: str, body: Mapping[str, Any]) -> None:
        stream = await self.owned(owner, _stream_id(body))
        key = _subject(body)
        if key not in stream.subjects:
            raise StreamError(404, "the subject is not in the stream")
        subjects = tuple(item for item in stream.subjects if item != key)
        await self._streams.put(replace(stream, subjects=subjects))

    # --- verification (§8.1.4) --------------------------------------------------------------
    async def verify(self, owner: str, body: Mapping[str, Any]) -> None:
        stream = await self.owned(owner, _stream_id(body))
        state = body.get("state")
        if state is not None:
            state = _text(state, "state", MAX_STATE)
        now = self._clock()
        if stream.verified_at is not None and now - stream.verified_at < MIN_VERIFICATION_INTERVAL:
            raise StreamError(429, f"at most one verification per {MIN_VERIFICATION_INTERVAL} s")
        stream = replace(stream, verified_at=now)
        await self._streams.put(stream)
        await self._on_verify(stream, state)

    # --- helpers ----------------------------------------------------------------------------
    async def owned(self, owner: str, stream_id: str | None) -> SsfStream:
        if not stream_id or len(stream_id) > 64:
            raise StreamError(400, "stream_id is required")
        stream = await self._streams.get(stream_id)
        # Another client's stream is "not found" too: its existence is not ours to reveal.
        if stream is None or stream.owner != owner:
            raise StreamError(404, "no such stream")
        return stream

    def view(self, stream: SsfStream) -> dict[str, Any]:
        """The configuration as SSF §8.1.1 shows it; the receiver's authorization header is a
        secret and is never shown back."""
        delivered = [event for event in stream.events_requested if event in EVENTS_SUPPORTED]
        view: dict[str, Any] = {
            "stream_id": stream.stream_id,
            "iss": self._issuer,
            "aud": stream.audience,
            "events_supported": list(EVENTS_SUPPORTED),
            "events_requested": list(stream.events_requested),
            "events_delivered": delivered,
            "delivery": {"method": stream.delivery_method, "endpoint_url": stream.endpoint_url},
            "min_verification_interval": MIN_VERIFICATION_INTERVAL,
        }
        if stream.description:
            view["description"] = stream.description
        return view

    async def _delivery(self, delivery: object, stream_id: str) -> tuple[str, str, str | None]:
        if delivery is None:
            delivery = {"method": POLL}
        if not isinstance(delivery, dict):
            raise StreamError(400, "delivery must be an object")
        method = delivery.get("method")
        if method not in METHODS:
            raise StreamError(400, f"delivery.method must be {PUSH} or {POLL}")
        if method == POLL:
            if delivery.get("endpoint_url") not in (None, self._poll_url(stream_id)):
                raise StreamError(400, "for poll delivery the transmitter supplies endpoint_url")
            return POLL, self._poll_url(stream_id), None
        url = delivery.get("endpoint_url")
        if not isinstance(url, str):
            raise StreamError(400, "push delivery needs delivery.endpoint_url")
        await self._check_push_endpoint(url)
        authorization = delivery.get("authorization_header")
        if authorization is not None:
            authorization = _text(authorization, "authorization_header", MAX_AUTHORIZATION)
            if not authorization.isprintable() or not authorization.isascii():
                raise StreamError(400, "authorization_header must be printable ASCII")
        return PUSH, url, authorization

    async def _check_push_endpoint(self, url: str) -> None:
        """https on a public address (SSRF: the server fetches it), unless the development
        setting allows loopback; checked again at each delivery, as DNS can change."""
        try:
            check_uri(url, "endpoint_url")
            await check_url(url, allow_loopback=self._allow_loopback)
        except UriError as exc:
            raise StreamError(400, str(exc)) from None
        except OutboundRefused as exc:
            raise StreamError(400, f"endpoint_url: {exc}") from None


def _only_receiver_fields(body: Mapping[str, Any], *, allow_transmitter: bool = False) -> None:
    for name in body:
        if name in _RECEIVER_FIELDS or (name == "stream_id" and allow_transmitter):
            continue
        if name in _TRANSMITTER_FIELDS and allow_transmitter:
            continue  # a receiver may PUT back what it read; transmitter members are ignored
        raise StreamError(400, f"{name!r} is not a member a receiver may set")


def _stream_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("stream_id")
    return value if isinstance(value, str) else None


def _events(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StreamError(400, "events_requested must be a list of event type URIs")
    if len(value) > MAX_EVENTS_REQUESTED:
        raise StreamError(400, f"at most {MAX_EVENTS_REQUESTED} events_requested")
    for item in value:
        if len(item) > 256:
            raise StreamError(400, "an event type URI is at most 256 characters")
    return tuple(dict.fromkeys(value))


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise StreamError(400, f"{name} must be a string of at most {limit} characters")
    return value


def _subject(body: Mapping[str, Any]) -> str:
    try:
        return normalise(body.get("subject"))
    except SubjectError as exc:
        raise StreamError(400, str(exc)) from None


def _status_view(stream: SsfStream) -> dict[str, Any]:
    view = {"stream_id": stream.stream_id, "status": stream.status}
    if stream.reason:
        view["reason"] = stream.reason
    return view
