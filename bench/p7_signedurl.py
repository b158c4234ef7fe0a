"""P7: signed-URL verifications per second on one core, and a 1,000-segment playlist rewritten.

Verification: 2,000 distinct segment links (URL mode, no other query, as the HLS rewriter emits
them), each checked in full: parse, canonical path, key lookup, HMAC-SHA256, constant-time
compare, expiry. The baseline, timed in the same interleaved rounds, is the floor any HMAC
scheme pays: `hmac.compare_digest(hmac.digest(key, message, "sha256"), expected)` over messages
of the same length. Goal: 200k/s.

Playlist: a VOD media playlist of 1,000 segments (plus an EXT-X-KEY and an EXT-X-MAP) rewritten
with every URI signed, the signers bound as the endpoint binds them. Goal: under 10 ms.
"""

from __future__ import annotations

import hmac
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Figure, interleaved, median_ratio, us
from tokenward.signedurl import KeySet, SigningKey, UrlSigner, Verifier
from tokenward.signedurl.hls import HlsLinks, sign_playlist

LINKS = 2000
ROUNDS = 9
PLAYLIST_RUNS = 60
VERIFY_GOAL = 200_000.0
PLAYLIST_GOAL_MS = 10.0
NOW = 1_800_000_000
SECRET = bytes(range(32))


@dataclass
class KiloFigure(Figure):
    """The headline in thousands: `P7: 312k (...)`."""

    def line(self) -> str:
        extra = "; ".join(self.details)
        return f"{self.name}: {self.value:.0f}k ({self.unit}{'; ' + extra if extra else ''})"


def _links() -> tuple[Verifier, list[tuple[str, str]]]:
    keys = KeySet(SigningKey("2025-06", SECRET), [SigningKey("2025-05", SECRET[::-1])])
    signer = UrlSigner(keys, clock=lambda: NOW)
    bound = signer.bind(ttl=300)
    links = []
    for index in range(LINKS):
        path = f"/videos/title-{index % 50:03d}/720p/segment_{index:05d}.ts"
        links.append((path, bound.query_for(path)))
    return Verifier(keys, clock=lambda: NOW + 10), links


def _ours(verifier: Verifier, links: list[tuple[str, str]]) -> Callable[[], int]:
    verify = verifier.verify_request
    now = float(NOW + 10)

    def run() -> int:
        for path, query in links:
            if verify(path, query, None, now).reason is not None:
                raise AssertionError("a valid link was refused")
        return len(links)

    return run


def _bare(links: list[tuple[str, str]]) -> Callable[[], int]:
    # Same message length as ours: the signed string is about path + claims + query.
    prepared = []
    for path, _ in links:
        message = f"tw1\n2025-06\n{NOW + 300}\n\n\n\nurl\n{path}\n".encode()
        prepared.append((message, hmac.digest(SECRET, message, "sha256")))
    digest, compare = hmac.digest, hmac.compare_digest

    def run() -> int:
        for message, expected in prepared:
            if not compare(digest(SECRET, message, "sha256"), expected):
                raise AssertionError("baseline mismatch")
        return len(prepared)

    return run


def _playlist() -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:6",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        '#EXT-X-KEY:METHOD=AES-128,URI="../keys/title.key",IV=0x00000000000000000000000000000001',
        '#EXT-X-MAP:URI="init.mp4"',
    ]
    for index in range(1000):
        lines += ["#EXTINF:6.006,", f"segment_{index:05d}.m4s"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def _rewrite_ms() -> tuple[float, float]:
    signer = UrlSigner(KeySet(SigningKey("2025-06", SECRET)), clock=lambda: NOW)
    text = _playlist()
    links = HlsLinks(media_origin="https://cdn.example", external=True)
    samples = []
    for _ in range(PLAYLIST_RUNS):
        start = time.perf_counter()
        out = sign_playlist(
            text,
            "/videos/title-001/720p/index.m3u8",
            signer.bind(ttl=6126),
            signer.bind(ttl=3600),
            links,
        )
        samples.append((time.perf_counter() - start) * 1e3)
    if out.count("tw_sig=") != 1002:
        raise AssertionError("not every URI was signed")
    return statistics.median(samples), min(samples)


def run() -> list[Figure]:
    verifier, links = _links()
    times = interleaved({"ours": _ours(verifier, links), "bare": _bare(links)}, ROUNDS)
    rate = 1 / statistics.median(times["ours"])
    vs_bare = median_ratio(times["bare"], times["ours"])  # throughput relative to bare HMAC
    median_ms, best_ms = _rewrite_ms()
    print(
        f"  P7 verify: {rate:,.0f}/s ({us(statistics.median(times['ours']))}), bare HMAC "
        f"{1 / statistics.median(times['bare']):,.0f}/s -> {vs_bare:.2f}x bare HMAC, "
        f"{rate / VERIFY_GOAL:.2f}x the 200k/s goal"
    )
    print(
        f"  P7 playlist: 1,000 segments rewritten in {median_ms:.2f} ms median "
        f"(best {best_ms:.2f} ms) -> {median_ms / PLAYLIST_GOAL_MS:.2f}x the 10 ms goal"
    )
    return [
        KiloFigure(
            "P7",
            rate / 1e3,
            "signed-URL verifications/s/core",
            [
                f"{vs_bare:.2f}× bare HMAC",
                f"1,000-segment playlist {median_ms:.1f} ms",
            ],
        )
    ]
