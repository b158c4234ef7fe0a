"""A private_key_jwt client's public keys: registered with the client (`jwks`), or fetched from
its `jwks_uri` and cached per URL, refetched on an unknown kid at most every 30 s (so a client
rotates its keys without an operator). Both go through the same strict JWK loading
(tokens.jwk): pinned algorithms, no weak keys, no private members."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import httpx
import orjson

from tokenward.core.records import ClientRecord
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks
from tokenward.tokens.key_sources import StaticKeySource
from tokenward.tokens.remote_jwks import RemoteJwks

REMOTE_SETS = 256  # jwks_uri caches kept; the least recently used goes first


class KeyLookup:
    def __init__(self, source: StaticKeySource | RemoteJwks) -> None:
        self._source = source

    def __call__(self, kid: str | None) -> VerificationKey | None:
        return self._source.get(kid)

    def values(self) -> list[VerificationKey]:
        return self._source.values()


class ClientKeys:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,  # tests
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._remote: OrderedDict[str, RemoteJwks] = OrderedDict()

    async def lookup(
        self, client: ClientRecord, kid: str | None, *, refetch: bool | None = None
    ) -> KeyLookup:
        """The client's keys, fresh enough for a token naming `kid` (`refetch`: ask for a
        fresh remote set whatever the kid, rate-limited the same way). Raises JoseError (or
        orjson.JSONDecodeError) when the registered set is unusable."""
        if client.jwks_uri is None:
            return KeyLookup(
                StaticKeySource(key_set_from_jwks(orjson.loads(client.jwks or '{"keys": []}')))
            )
        remote = self._remote.get(client.jwks_uri)
        if remote is None:
            remote = RemoteJwks(client.jwks_uri, transport=self._transport, clock=self._clock)
            self._remote[client.jwks_uri] = remote
            while len(self._remote) > REMOTE_SETS:
                self._remote.popitem(last=False)
        self._remote.move_to_end(client.jwks_uri)
        await remote.refresh(unknown_kid=remote.get(kid) is None if refetch is None else refetch)
        return KeyLookup(remote)
