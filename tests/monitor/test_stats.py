"""Per-client usage series (the developer portal's chart): counted per bucket, allowed and
refused apart, over the window only."""

from __future__ import annotations

from tokenward.core.events import ALLOW, DENY, UsageEvent
from tokenward.monitor.stats import UsageStats


def event(at: float, client_id: str | None, decision: str = ALLOW) -> UsageEvent:
    return UsageEvent(at, "j", "s", client_id, "/api", "192.0.2.1", None, 200, decision, "")


def test_client_series_counts_one_clients_requests_per_bucket() -> None:
    stats = UsageStats(bucket=60, buckets=3)
    start = 6000.0
    stats.record(event(start, "app"), 2)
    stats.record(event(start + 1, "app", DENY))
    stats.record(event(start + 61, "app"))
    stats.record(event(start + 61, "other"), 5)
    stats.record(event(start + 62, None))
    series = stats.client_series("app", start + 125)
    assert series == [
        {"t": 6000.0, "allow": 2, "deny": 1},
        {"t": 6060.0, "allow": 1, "deny": 0},
        {"t": 6120.0, "allow": 0, "deny": 0},
    ]
    assert [p["allow"] for p in stats.client_series("other", start + 125)] == [0, 5, 0]
    # Past the window, the old buckets are gone.
    assert all(p["allow"] == 0 for p in stats.client_series("app", start + 600))
