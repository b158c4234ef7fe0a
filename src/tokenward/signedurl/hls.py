"""HLS playlists (RFC 8216) with every URI replaced by a signed URL, all else byte for byte.

`rewrite` is the syntax: it finds URI lines and `URI="..."` attributes and asks a callback for
each one's replacement; line endings (LF or CRLF), comments, unknown tags and attribute order
are untouched, because it edits spans inside lines and never re-serialises a line.
`sign_playlist` is the policy: resolve each URI against the playlist's path (RFC 3986 §5.2),
keep it under an allowed prefix, and sign it: media (segments, keys, init maps) for the CDN,
nested playlists (variants, renditions, I-frame playlists) for the endpoint that rewrites them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tokenward.signedurl.canonical import (
    canonical_path,
    has_scheme,
    resolve_reference,
    split_query,
)
from tokenward.signedurl.errors import SignedUrlError
from tokenward.signedurl.sign import BoundSigner


class UriKind(Enum):
    PLAYLIST = "playlist"
    MEDIA = "media"


class PlaylistError(ValueError):
    """Not a playlist we can rewrite faithfully; the message names the problem, not the text."""


# Tags whose URI attribute names another playlist; every other tag's URI names a resource.
_PLAYLIST_TAGS = frozenset({"EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF", "EXT-X-RENDITION-REPORT"})
# A reference that is already a canonical relative path of one segment: the common case.
_SIMPLE_REF = re.compile(r"[A-Za-z0-9\-_~!$&'()*+,;=@][A-Za-z0-9\-._~!$&'()*+,;=@]*")
Replace = Callable[[str, UriKind], "str | None"]


def rewrite(text: str, replace: Replace) -> str:
    """`text` with each URI swapped for `replace(uri, kind)`; None leaves that URI as it is."""
    if not text.startswith("#EXTM3U"):
        raise PlaylistError("a playlist starts with #EXTM3U")  # RFC 8216 §4.3.1.1
    lines = text.split("\n")  # a CR before the LF stays part of its line
    variant_next = False
    for index, line in enumerate(lines):
        if not line:
            continue
        if line[0] == "#":
            # Only tags (#EXT...) carry attributes; any other # line is a comment, kept as is.
            if line.startswith("#EXT-X-STREAM-INF:"):
                variant_next = True  # RFC 8216 §4.3.4.2: the next URI line is its playlist
            elif 'URI="' in line and line.startswith("#EXT"):
                lines[index] = _rewrite_tag(line, replace)
            continue
        uri = line.strip(" \t\r")
        if not uri:
            continue  # blank lines are ignored (RFC 8216 §4.1)
        kind = UriKind.PLAYLIST if variant_next else UriKind.MEDIA
        variant_next = False
        new = replace(uri, kind)
        if new is not None:
            start = line.index(uri)
            lines[index] = line[:start] + new + line[start + len(uri) :]
    return "\n".join(lines)


def _rewrite_tag(line: str, replace: Replace) -> str:
    colon = line.find(":")
    if colon < 0:
        return line
    kind = UriKind.PLAYLIST if line[1:colon] in _PLAYLIST_TAGS else UriKind.MEDIA
    end = len(line) - 1 if line.endswith("\r") else len(line)
    pieces: list[str] = []
    done = 0
    for start, stop in _uri_spans(line, colon + 1, end):
        new = replace(line[start:stop], kind)
        if new is not None:
            pieces += [line[done:start], new]
            done = stop
    return "".join(pieces) + line[done:] if pieces else line


def _uri_spans(line: str, index: int, end: int) -> list[tuple[int, int]]:
    """Spans of quoted `URI` attribute values in an attribute list (RFC 8216 §4.2)."""
    spans = []
    while index < end:
        equals = line.find("=", index, end)
        if equals < 0:
            raise PlaylistError("an attribute without a value")
        if line.startswith('"', equals + 1):
            close = line.find('"', equals + 2, end)
            if close < 0:
                raise PlaylistError("an unterminated quoted string")
            if line[index:equals] == "URI":
                spans.append((equals + 2, close))
            index = close + 1
        else:
            comma = line.find(",", equals, end)
            index = end if comma < 0 else comma
        if index < end and line[index] != ",":
            raise PlaylistError("attributes must be separated by commas")
        index += 1
    return spans


def playlist_duration(text: str) -> float:
    """Seconds of media in a finished (VOD) media playlist; 0 for live or master playlists.

    Its links must outlive playback: a player fetches the last segment minutes after the list.
    """
    if "#EXT-X-ENDLIST" not in text:
        return 0.0
    total = 0.0
    for match in re.finditer(r"#EXTINF:([0-9]+(?:\.[0-9]+)?)", text):
        total += float(match[1])
    return total


@dataclass(frozen=True, slots=True)
class HlsLinks:
    """Where signed URIs point.

    Media go to `media_origin` (a CDN, e.g. "https://cdn.example"; "" for root-relative links).
    Nested playlists go to `playlist_origin` + `playlist_mount` + their path: the endpoint that
    will rewrite them in turn (or the CDN too, with both left at their defaults). Only paths
    under `allowed_prefix` are signed; a playlist pointing elsewhere is refused.
    """

    media_origin: str = ""
    playlist_origin: str = ""
    playlist_mount: str = ""
    allowed_prefix: str = "/"
    external: bool = False  # sign absolute URIs of `media_origin` too (others stay untouched)


def sign_playlist(
    text: str,
    playlist_path: str,
    media: BoundSigner,
    playlists: BoundSigner,
    links: HlsLinks,
) -> str:
    """Rewrite `text`, found at `playlist_path`, with every URI of ours signed."""
    try:
        playlist_path = canonical_path(playlist_path)
    except SignedUrlError as error:
        raise PlaylistError(f"the playlist's own path: {error}") from None
    base_dir = playlist_path[: playlist_path.rfind("/") + 1]
    cache: dict[tuple[str, UriKind], str | None] = {}  # byte-range segments repeat their URI

    def replace(uri: str, kind: UriKind) -> str | None:
        key = (uri, kind)
        if key in cache:
            return cache[key]
        if _SIMPLE_REF.fullmatch(uri):
            path, query = base_dir + uri, ""
        else:
            located = _locate(uri, playlist_path, links)
            if located is None:
                cache[key] = None
                return None
            path, query = located
        cache[key] = signed = _signed(path, query, kind, media, playlists, links)
        return signed

    try:
        return rewrite(text, replace)
    except SignedUrlError as error:
        raise PlaylistError(f"a URI that cannot be signed: {error}") from None


def _locate(uri: str, playlist_path: str, links: HlsLinks) -> tuple[str, str] | None:
    """(path, raw query) of a URI we sign, or None for one we leave alone (another host)."""
    if uri.startswith("//") or has_scheme(uri):
        origin = links.media_origin.lower()
        absolute = ("https:" + uri) if uri.startswith("//") else uri
        if not (links.external and origin and absolute.lower().startswith(origin + "/")):
            return None  # skd://, data:, another host's key server: not ours to sign
        uri = absolute[len(origin) :]
    return resolve_reference(playlist_path, uri)


def _signed(
    path: str,
    query: str,
    kind: UriKind,
    media: BoundSigner,
    playlists: BoundSigner,
    links: HlsLinks,
) -> str:
    if not path.startswith(links.allowed_prefix):
        raise PlaylistError("a URI outside the allowed prefix")
    fields, others = split_query(query)
    if fields:
        raise PlaylistError("a URI that already carries tw_ parameters")
    if kind is UriKind.PLAYLIST:
        mounted = links.playlist_mount + path
        return f"{links.playlist_origin}{mounted}?{playlists.query_for(mounted, others)}"
    return f"{links.media_origin}{path}?{media.query_for(path, others)}"
