"""FastAPI routes that trade one bearer check for signed links: to an asset, or HLS playlists.

    router = signed_media_router(
        signer=UrlSigner(keys), verifier=Verifier(keys), source=DirectorySource("/srv/media"),
        policy=MediaPolicy(media_origin="https://cdn.example"), validator=validator,
    )
    app.include_router(router, prefix="/media")

`GET /media/url/{asset}` (bearer with the scopes) answers `{"url", "expires"}`: a CDN link, or
for a `.m3u8` a link to the playlist route, so a native player needing no header can start.
`GET /media/hls/{asset}.m3u8` (bearer, or a link this router signed) answers the playlist with
every URI signed: media for the CDN with a short TTL (plus the media's duration for a finished
playlist), nested playlists back to this route. A playlist reached by a signed link hands its
own expiry down to the playlists it links, so a chain of links can never outlive the bearer grant.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tokenward.core.claims import AccessToken
from tokenward.guard.validator import Validator
from tokenward.resource.fastapi import require_scopes
from tokenward.signedurl.asgi import request_path
from tokenward.signedurl.canonical import canonical_path, split_url
from tokenward.signedurl.errors import Reason, SignedUrlError
from tokenward.signedurl.hls import HlsLinks, PlaylistError, playlist_duration, sign_playlist
from tokenward.signedurl.sign import BoundSigner, UrlSigner
from tokenward.signedurl.sources import PlaylistSource, SourceError, SourceNotFound
from tokenward.signedurl.verify import Verifier

URL_ROUTE = "tokenward_signed_url"
HLS_ROUTE = "tokenward_hls_playlist"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_PATH_SAFE = "/-._~!$&'()*+,;=:@"  # what stays literal when a decoded path is encoded again
_NO_STORE = {"cache-control": "no-store"}  # links are per caller: no shared cache may keep them


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """What links look like: where media live, how long links last, what they are bound to.

    `client_ip` returns the caller's address as the edge will see it (behind a proxy, from a
    trusted forwarded header); when given, links are bound to it (widened to `ip_prefix`).
    """

    media_origin: str
    asset_prefix: str = "/"
    url_ttl: int = 300
    segment_ttl: int = 120
    playlist_ttl: int = 4 * 3600
    client_ip: Callable[[Request], str | None] | None = None
    ip_prefix: int | None = None
    subject_in_links: bool = False

    def __post_init__(self) -> None:
        # Links are the origin plus a signed path: a path or slash here would go unsigned.
        origin, path, query = split_url(self.media_origin)
        if not origin or path != "/" or query or origin != self.media_origin:
            raise ValueError("media_origin is scheme://host[:port], lower-case, no path")
        prefix = self.asset_prefix
        if canonical_path(prefix) != prefix or not prefix.endswith("/"):
            raise ValueError("asset_prefix is a canonical path ending with /")


class _Grant(NamedTuple):
    subject: str | None
    expires: int | None  # set when the caller came with a signed link: children inherit it


def _refusal(status: int, error: str, reason: str | None = None) -> JSONResponse:
    payload = {"error": error} if reason is None else {"error": error, "reason": reason}
    return JSONResponse(payload, status_code=status, headers=_NO_STORE)


def _asset_path(asset: str, policy: MediaPolicy) -> str:
    try:
        quoted = quote(asset, safe=_PATH_SAFE, errors="strict")
    except UnicodeEncodeError:
        raise SignedUrlError(Reason.MALFORMED, "not valid Unicode") from None
    path = canonical_path("/" + quoted)
    if not path.startswith(policy.asset_prefix):
        raise SignedUrlError(Reason.WRONG_PATH, "outside the published assets")
    return path


def signed_media_router(
    *,
    signer: UrlSigner,
    verifier: Verifier,
    source: PlaylistSource,
    policy: MediaPolicy,
    scopes: Sequence[str] = ("media:read",),
    validator: Validator | None = None,
    realm: str = "tokenward",
) -> APIRouter:
    """The two routes; include the router under any prefix (`/media` in the examples)."""
    routes = _MediaRoutes(
        signer, verifier, source, policy, require_scopes(*scopes, validator=validator, realm=realm)
    )
    router = APIRouter()
    router.add_api_route("/url/{asset:path}", routes.signed_url, methods=["GET"], name=URL_ROUTE)
    router.add_api_route("/hls/{asset:path}", routes.playlist, methods=["GET"], name=HLS_ROUTE)
    return router


class _MediaRoutes:
    def __init__(
        self,
        signer: UrlSigner,
        verifier: Verifier,
        source: PlaylistSource,
        policy: MediaPolicy,
        bearer: Callable[[Request], Awaitable[AccessToken]],
    ) -> None:
        self.signer = signer
        self.verifier = verifier
        self.source = source
        self.policy = policy
        self.bearer = bearer

    def _address(self, request: Request) -> str | None:
        client_ip = self.policy.client_ip
        return client_ip(request) if client_ip is not None else None

    def _bind(self, request: Request, subject: str | None, **expiry: int) -> BoundSigner:
        address = self._address(request)
        return self.signer.bind(
            client_ip=address,
            ip_prefix=self.policy.ip_prefix if address is not None else None,
            subject=subject,
            **expiry,
        )

    async def signed_url(self, request: Request, asset: str) -> Response:
        token = await self.bearer(request)  # raises the RFC 6750 challenge
        policy = self.policy
        try:
            path = _asset_path(asset, policy)
        except SignedUrlError as error:
            return _refusal(404 if error.reason is Reason.WRONG_PATH else 400, "bad_asset")
        subject = token.sub if policy.subject_in_links else None
        if path.endswith(".m3u8"):
            target = str(request.url_for(HLS_ROUTE, asset=""))[:-1] + path
            bound = self._bind(request, subject, ttl=policy.playlist_ttl)
        else:
            target = policy.media_origin + path
            bound = self._bind(request, subject, ttl=policy.url_ttl)
        payload = {"url": bound.sign_url(target), "expires": bound.expires}
        return JSONResponse(payload, headers=_NO_STORE)

    async def playlist(self, request: Request, asset: str) -> Response:
        grant = await self._authorize(request)
        if isinstance(grant, Response):
            return grant
        try:
            path = _asset_path(asset, self.policy)
        except SignedUrlError:
            return _refusal(404, "not_found")
        if not path.endswith(".m3u8"):
            return _refusal(404, "not_found")
        try:
            text = (await self.source.read(path)).decode("utf-8")
            return self._rewritten(request, text, path, grant)
        except SourceNotFound:
            return _refusal(404, "not_found")
        except (SourceError, PlaylistError, UnicodeDecodeError):
            return _refusal(502, "bad_origin_playlist")

    async def _authorize(self, request: Request) -> _Grant | Response:
        query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
        if "tw_" not in query.lower() and "tw%5f" not in query.lower():
            token = await self.bearer(request)
            return _Grant(token.sub if self.policy.subject_in_links else None, None)
        address = self._address(request)
        if address is None and request.client is not None:
            address = request.client.host
        verdict = self.verifier.verify_request(request_path(request.scope), query, address)
        if verdict.reason is not None:
            return _refusal(verdict.reason.status, "signed_url_refused", verdict.reason.value)
        return _Grant(verdict.subject, verdict.expires)

    def _rewritten(self, request: Request, text: str, path: str, grant: _Grant) -> Response:
        policy = self.policy
        duration = math.ceil(playlist_duration(text))
        media = self._bind(
            request, grant.subject, ttl=min(policy.segment_ttl + duration, self.signer.max_ttl)
        )
        try:
            playlists = (
                self._bind(request, grant.subject, ttl=policy.playlist_ttl)
                if grant.expires is None
                else self._bind(request, grant.subject, expires=grant.expires)
            )
        except SignedUrlError:  # the link expired within the verifier's leeway
            return _refusal(410, "signed_url_refused", Reason.EXPIRED.value)
        base = urlsplit(str(request.url_for(HLS_ROUTE, asset="")))
        links = HlsLinks(
            media_origin=policy.media_origin,
            playlist_origin=f"{base.scheme}://{base.netloc}",
            playlist_mount=base.path.rstrip("/"),
            allowed_prefix=policy.asset_prefix,
            external=True,
        )
        body = sign_playlist(text, path, media, playlists, links)
        return Response(body.encode(), media_type=PLAYLIST_TYPE, headers=_NO_STORE)
