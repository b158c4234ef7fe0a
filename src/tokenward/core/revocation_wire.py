"""The wire format of `GET /revocations`, shared by the server that publishes its revocation log
and the follower that reads it (`guard.remote_revocations.RemoteRevocations`).

An entry never carries the revoked value, only `digest(kind, value)` (SHA-256, base64url): a
follower hashes the jti, sub, sid and client_id of the token in front of it and looks the
digests up. Anonymous readers learn how many revocations there were and when, and can test a
value they already hold (a token's own claims, a guessable client id); they cannot list the
subjects, sessions or tokens revoked (docs/deployment.md, "Resource servers").
"""

from __future__ import annotations

import base64
import hashlib

from tokenward.core.records import RevocationKind

# What a feed entry names: the store's vocabulary, spelled as on the wire.
JTI, SUBJECT, SESSION, CLIENT = (
    RevocationKind.JTI,
    RevocationKind.SUBJECT,
    RevocationKind.SESSION,
    RevocationKind.CLIENT,
)
KINDS = frozenset({JTI, SUBJECT, SESSION, CLIENT})

PATH = "/revocations"
METADATA_FIELD = "tokenward_revocation_feed_endpoint"  # RFC 8414 §2 allows extensions
MAX_LIMIT = 1000  # entries per page
# Seconds a long-poll may be held: below the 60 s idle timeout of common proxies and balancers.
MAX_WAIT = 25
MAX_SEQ = 2**63 - 1  # the database's BIGINT

_LABEL = b"tokenward revocation v1\x00"


def digest(kind: str, value: str) -> str:
    """What the feed publishes instead of `value`: 43 base64url characters."""
    material = _LABEL + kind.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hashlib.sha256(material).digest()).rstrip(b"=").decode()
