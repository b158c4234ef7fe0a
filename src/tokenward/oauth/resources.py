"""Resource indicators (RFC 8707): the `resource` parameter selects the token's audience."""

from __future__ import annotations

from urllib.parse import urlsplit

from tokenward.core.records import ClientRecord
from tokenward.oauth.errors import InvalidTarget


def audience_for(resources: tuple[str, ...], client: ClientRecord, default: str) -> tuple[str, ...]:
    allowed = set(client.audience) or {default}
    if not resources:
        return tuple(sorted(allowed)) if client.audience else (default,)
    for resource in resources:
        parts = urlsplit(resource)
        if (
            not parts.scheme or not parts.netloc or parts.fragment
        ):  # RFC 8707 §2: absolute, no fragment
            raise InvalidTarget("resource must be an absolute URI without a fragment")
        if resource not in allowed:
            raise InvalidTarget("the client may not request tokens for this resource")
    return tuple(dict.fromkeys(resources))
