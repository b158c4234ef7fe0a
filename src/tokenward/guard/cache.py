"""A bounded LRU of verified tokens, keyed by the exact credential string that was presented.

An entry keeps the token's claims, the instant it stops being acceptable (exp + leeway) and the
revocation generation it was last checked at; it never holds anything that skips those checks.
"""

from __future__ import annotations

from collections import OrderedDict

from tokenward.tokens.claims import AccessToken


class CacheEntry:
    __slots__ = ("expires", "generation", "token")

    def __init__(self, token: AccessToken, expires: float, generation: int) -> None:
        self.token = token
        self.expires = expires
        self.generation = generation


class TokenCache:
    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("the token cache needs room for at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, credential: str) -> CacheEntry | None:
        entry = self._entries.get(credential)
        if entry is not None:
            self._entries.move_to_end(credential)
        return entry

    def put(self, credential: str, entry: CacheEntry) -> None:
        self._entries[credential] = entry
        self._entries.move_to_end(credential)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, credential: str) -> None:
        self._entries.pop(credential, None)

    def clear(self) -> None:
        self._entries.clear()
