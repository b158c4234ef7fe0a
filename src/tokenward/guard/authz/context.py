"""Optional context sources: the client's country (a MaxMind database) and a risk score.

Both are seams: `CountryLookup` and `RiskProvider` are what the engine calls, and `MaxMindCountries`
is the one country source shipped (the `maxminddb` package, imported only when configured).
A risk engine plugs in as a `RiskProvider`; without one the score is 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tokenward.core.claims import AccessToken

MAX_RISK = 100


class CountryLookup(Protocol):
    def country(self, ip: str) -> str | None:
        """The ISO 3166-1 alpha-2 code for an address, or None when unknown."""
        ...


class RiskProvider(Protocol):
    def score(self, token: AccessToken, ip: str, route: str) -> int:
        """0 (no risk) to 100; called on the request path, so it must answer from memory."""
        ...


class MaxMindCountries:
    """Countries from a MaxMind DB file (GeoLite2/GeoIP2 Country or City layout)."""

    def __init__(self, path: str | Path) -> None:
        import maxminddb  # noqa: PLC0415 - optional: only deployments that configure it need it

        self._reader = maxminddb.open_database(str(path))

    def country(self, ip: str) -> str | None:
        try:
            record: Any = self._reader.get(ip)
        except ValueError:  # not an address
            return None
        return iso_code(record)

    def close(self) -> None:
        self._reader.close()


def iso_code(record: Any) -> str | None:
    """`country.iso_code` of a MaxMind record (registered_country when country is absent)."""
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        entry = record.get(key)
        code = entry.get("iso_code") if isinstance(entry, dict) else None
        if isinstance(code, str) and len(code) == 2 and code.isalpha():
            return code.upper()
    return None


def clamp_risk(value: int) -> int:
    return max(0, min(MAX_RISK, int(value)))
