"""Live usage for the console: requests over time, top tokens, subjects and addresses, deny
reasons. Per process, in fixed buckets (`bucket` seconds, the last `buckets` of them); each
bucket counts at most `MAX_KEYS_PER_BUCKET` distinct keys per table, the rest as "(other)".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tokenward.core.events import ALLOW, AuthEvent, Event

MAX_KEYS_PER_BUCKET = 5000
OTHER = "(other)"


@dataclass(slots=True)
class _Bucket:
    index: int
    allow: int = 0
    deny: int = 0
    tokens: Counter[str] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)
    ips: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    auth: Counter[str] = field(default_factory=Counter)
    # Per client: what the developer portal charts for each app (docs/portal.md).
    client_allow: Counter[str] = field(default_factory=Counter)
    client_deny: Counter[str] = field(default_factory=Counter)


def _count(table: Counter[str], key: str, n: int) -> None:
    if key in table or len(table) < MAX_KEYS_PER_BUCKET:
        table[key] += n
    else:
        table[OTHER] += n


class UsageStats:
    def __init__(self, bucket: float = 60.0, buckets: int = 60) -> None:
        self.bucket = bucket
        self.size = buckets
        self._buckets: dict[int, _Bucket] = {}

    def record(self, event: Event, n: int = 1) -> None:
        index = int(event.time // self.bucket)
        current = self._buckets.get(index)
        if current is None:
            current = self._buckets[index] = _Bucket(index)
            for old in [i for i in self._buckets if i <= index - self.size]:
                del self._buckets[old]
        if isinstance(event, AuthEvent):
            _count(current.auth, event.kind, n)
            return
        if event.decision == ALLOW:
            current.allow += n
            if event.client_id is not None:
                _count(current.client_allow, event.client_id, n)
        else:
            current.deny += n
            _count(current.reasons, event.reason, n)
            if event.client_id is not None:
                _count(current.client_deny, event.client_id, n)
        if event.jti is not None:
            _count(current.tokens, f"{event.jti}|{event.sub}", n)
        if event.sub is not None:
            _count(current.subjects, event.sub, n)
        _count(current.ips, event.ip, n)

    def snapshot(self, now: float, top: int = 10) -> dict[str, Any]:
        last = int(now // self.bucket)
        indexes = range(last - self.size + 1, last + 1)
        series = []
        totals: dict[str, Counter[str]] = {
            name: Counter() for name in ("tokens", "subjects", "ips", "reasons", "auth")
        }
        for index in indexes:
            bucket = self._buckets.get(index)
            series.append(
                {
                    "t": index * self.bucket,
                    "allow": bucket.allow if bucket else 0,
                    "deny": bucket.deny if bucket else 0,
                }
            )
            if bucket is not None:
                for name, table in totals.items():
                    table.update(getattr(bucket, name))
        return {
            "bucket": self.bucket,
            "series": series,
            "top_tokens": [_token_row(key, n) for key, n in totals["tokens"].most_common(top)],
            "top_subjects": _rows(totals["subjects"], top),
            "top_ips": _rows(totals["ips"], top),
            "deny_reasons": _rows(totals["reasons"], top),
            "auth_events": _rows(totals["auth"], top),
            "requests": sum(p["allow"] + p["deny"] for p in series),
            "denied": sum(p["deny"] for p in series),
        }

    def client_series(self, client_id: str, now: float) -> list[dict[str, float]]:
        """One client's requests per bucket over the window, oldest first: {t, allow, deny}
        (a client past the per-bucket key bound counts under "(other)", not here)."""
        last = int(now // self.bucket)
        series = []
        for index in range(last - self.size + 1, last + 1):
            bucket = self._buckets.get(index)
            allow = bucket.client_allow.get(client_id, 0) if bucket else 0
            deny = bucket.client_deny.get(client_id, 0) if bucket else 0
            series.append({"t": index * self.bucket, "allow": allow, "deny": deny})
        return series


def _rows(table: Counter[str], top: int) -> list[dict[str, Any]]:
    return [{"key": key, "count": count} for key, count in table.most_common(top)]


def _token_row(key: str, count: int) -> dict[str, Any]:
    jti, _, sub = key.partition("|")
    return {"key": jti, "sub": sub or None, "count": count}
