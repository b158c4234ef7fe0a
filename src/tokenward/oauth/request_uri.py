"""request_uri values for pushed authorization requests (RFC 9126 §2.2, §4).

`urn:ietf:params:oauth:request_uri:` and 256 random bits. Only the SHA-256 of the random part
is stored, so the store cannot be read back into usable URIs. A URI resolves once, for the
client that pushed it, before it expires; afterwards, or for anyone else, it is unknown.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence

import orjson

from tokenward.core.ports import PushedRequestStore
from tokenward.core.records import PushedRequest
from tokenward.oauth.errors import InvalidRequestUri

PREFIX = "urn:ietf:params:oauth:request_uri:"
MAX_URI = len(PREFIX) + 64


def _digest(handle: str) -> str:
    return hashlib.sha256(handle.encode("ascii")).hexdigest()


def is_pushed(uri: str) -> bool:
    """A request_uri of ours (every other form, e.g. an https URL to fetch, we refuse)."""
    return uri.startswith(PREFIX) and len(uri) <= MAX_URI


class RequestUris:
    def __init__(
        self,
        store: PushedRequestStore,
        lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.lifetime = lifetime
        self._clock = clock

    async def issue(self, client_id: str, pairs: Sequence[tuple[str, str]], signed: bool) -> str:
        handle = secrets.token_urlsafe(32)
        await self._store.save(
            PushedRequest(
                digest=_digest(handle),
                client_id=client_id,
                params=orjson.dumps([list(pair) for pair in pairs]).decode(),
                expires_at=self._clock() + self.lifetime,
                signed=signed,
            )
        )
        return PREFIX + handle

    async def resolve(self, uri: str, client_id: str) -> tuple[list[tuple[str, str]], bool]:
        """The pushed request's parameters and whether it was signed; used up by this call."""
        if not is_pushed(uri):
            raise InvalidRequestUri("request_uri must come from our PAR endpoint")
        handle = uri[len(PREFIX) :]
        if not handle.isascii():
            raise InvalidRequestUri("the request_uri is unknown, used or expired")
        found = await self._store.take(_digest(handle), client_id, self._clock())
        if found is None:
            raise InvalidRequestUri("the request_uri is unknown, used or expired")
        pairs = [(str(name), str(value)) for name, value in orjson.loads(found.params)]
        return pairs, found.signed
