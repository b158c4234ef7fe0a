"""Places for the risk scorer's impossible-travel feature, from a MaxMind City database
(`TOKENWARD_MONITOR_RISK__GEOIP`; the `geoip` extra). Country-only databases have no
location: every lookup answers None and the feature stays silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class MaxMindPlaces:
    def __init__(self, path: str | Path) -> None:
        import maxminddb  # noqa: PLC0415 - optional: only deployments that configure it need it

        self._reader = maxminddb.open_database(str(path))

    def locate(self, ip: str) -> tuple[float, float] | None:
        try:
            record: Any = self._reader.get(ip)
        except ValueError:  # not an address
            return None
        return place(record)

    def close(self) -> None:
        self._reader.close()


def place(record: Any) -> tuple[float, float] | None:
    """`location.latitude/longitude` of a MaxMind record, when both are numbers."""
    location = record.get("location") if isinstance(record, dict) else None
    if not isinstance(location, dict):
        return None
    lat, lon = location.get("latitude"), location.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return float(lat), float(lon)
    return None
