"""Every Redis key prefix, channel and stream name of one deployment, in one place.

The names are a wire contract: servers and gateways of one deployment meet on them, and during a
rolling upgrade old and new nodes must keep reading the same keys, so each derivation here is
pinned byte for byte by tests/deploy/test_namespace.py. Each storage adapter then adds its own
key suffixes under the prefix it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenward.config import Settings


@dataclass(frozen=True)
class Namespace:
    root: str  # `Settings.redis_namespace`, or a gateway's configured `namespace:`

    @classmethod
    def of(cls, settings: Settings) -> Namespace:
        return cls(settings.redis_namespace)

    @classmethod
    def derived(cls, issuer: str, database_schema: str | None) -> Namespace:
        """The authorization servers' namespace from the same two inputs, without reading the
        environment (a remote gateway is not configured by TOKENWARD_*)."""
        return cls.of(Settings.model_construct(issuer=issuer, database_schema=database_schema))

    @property
    def revocations(self) -> str:
        """Pub/sub channel of revocations: servers publish, every node's feed listens."""
        return self.root + ":revocations"

    @property
    def blocklist(self) -> str:
        return self.root + ":"

    @property
    def windows(self) -> str:
        return self.root + ":windows:"

    @property
    def alert_claims(self) -> str:
        return self.root + ":alerted:"

    @property
    def sign_in(self) -> str:
        return self.root + ":signin:"

    @property
    def replay(self) -> str:
        """The servers' DPoP proof and client assertion replay cache."""
        return self.root + ":replay:"

    @property
    def usage(self) -> str:
        """Stream of the gateways' usage events, read by the servers' monitors."""
        return self.root + ":usage"

    @property
    def rate_limits(self) -> str:
        return self.root + ":ratelimit:"

    @property
    def registration_rate(self) -> str:
        """The servers' dynamic client registrations per address (RFC 7591, GCRA state)."""
        return self.root + ":register-rate:"

    @property
    def idempotency(self) -> str:
        return self.root + ":idempotency:"

    @property
    def gateway_replay(self) -> str:
        """The gateways' own DPoP replay cache: their proofs are not the servers' proofs."""
        return self.root + ":gateway-replay:"

    @property
    def bff_sessions(self) -> str:
        """The gateways' browser-mode sessions, pending sign-ins and refresh locks."""
        return self.root + ":bff:"
