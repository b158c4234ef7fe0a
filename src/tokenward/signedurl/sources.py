"""Where playlists and files come from: a local directory or an HTTP origin.

Paths given here are canonical (canonical.py): no dot segments, no encoded slashes. A directory
lookup still resolves symlinks and refuses anything outside the root, because a link inside the
tree may point anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

import anyio.to_thread
import httpx

MAX_PLAYLIST_BYTES = 8 * 1024 * 1024  # a 1,000-segment playlist is ~150 KiB


class SourceNotFound(LookupError):
    """No such asset: answered with 404."""


class SourceError(RuntimeError):
    """The source failed (unreachable, too large, an error status): answered with 502."""


class PlaylistSource(Protocol):
    async def read(self, path: str) -> bytes: ...


def file_under(root: Path, path: str) -> Path | None:
    """The regular file `path` (canonical, percent-encoded) names under `root`, or None."""
    try:
        relative = unquote(path, errors="strict").lstrip("/")
        candidate = (root / relative).resolve(strict=True)
    except (UnicodeDecodeError, OSError, RuntimeError, ValueError):  # missing, loop, NUL byte
        return None
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


class DirectorySource:
    def __init__(self, root: str | Path, *, max_bytes: int = MAX_PLAYLIST_BYTES) -> None:
        self.root = Path(root).resolve(strict=True)
        self._max_bytes = max_bytes

    async def read(self, path: str) -> bytes:
        file = file_under(self.root, path)
        if file is None:
            raise SourceNotFound(path)
        return await anyio.to_thread.run_sync(self._read, file)

    def _read(self, file: Path) -> bytes:
        with file.open("rb") as handle:
            data = handle.read(self._max_bytes + 1)
        if len(data) > self._max_bytes:
            raise SourceError("the playlist is larger than allowed")
        return data

    def __repr__(self) -> str:
        return f"DirectorySource({str(self.root)!r})"


class OriginSource:
    """GET `base_url` + path with the given client; redirects are not followed."""

    def __init__(
        self, base_url: str, client: httpx.AsyncClient, *, max_bytes: int = MAX_PLAYLIST_BYTES
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._max_bytes = max_bytes

    async def read(self, path: str) -> bytes:
        try:
            async with self._client.stream("GET", self.base_url + path) as response:
                if response.status_code == 404:
                    raise SourceNotFound(path)
                if response.status_code != 200:
                    raise SourceError(f"the origin answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise SourceError("the playlist is larger than allowed")
        except httpx.HTTPError as error:
            raise SourceError(f"the origin failed: {type(error).__name__}") from None
        return bytes(body)

    def __repr__(self) -> str:
        return f"OriginSource({self.base_url!r})"
