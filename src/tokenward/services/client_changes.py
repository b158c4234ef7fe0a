"""What a change to a client's registration means for what it already holds.

A client narrowed (a scope, a grant type, a redirect URI or a token exchange audience taken
away) may still hold tokens and grants issued under the wider registration: access tokens,
refresh token families, authorization codes for a removed redirect URI. We revoke all of the
client's grants then, with the client watermark (every token and family it was issued before
now; the same mechanism as disabling it), rather than picking out the ones holding what was
removed: simpler, and safe, since the client asked for the change and only has to get new
tokens under its new registration. A change that takes nothing away revokes nothing.
"""

from __future__ import annotations

from tokenward.core.records import ClientRecord


def narrowed(before: ClientRecord, after: ClientRecord) -> list[str]:
    """The kinds of permission `after` takes away from `before` (empty: none)."""
    taken = {
        "scope": not before.scopes <= after.scopes,
        "grant_types": not set(before.grant_types) <= set(after.grant_types),
        "redirect_uris": not set(before.redirect_uris) <= set(after.redirect_uris),
        "exchange_audiences": not set(before.exchange_audiences) <= set(after.exchange_audiences),
    }
    return [name for name, removed in taken.items() if removed]
