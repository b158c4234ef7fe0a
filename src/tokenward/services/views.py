"""Plain-data views of clients and users for JSON output, and who counts as an admin."""

from __future__ import annotations

import json
import time
from typing import Any

from tokenward.core.records import ClientRecord, UserRecord
from tokenward.oauth.mtls import SUBJECT_FIELDS

ADMIN_ROLE = "tokenward:admin"


def client_view(client: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "auth_method": client.auth_method,
        "grant_types": list(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "scope": " ".join(sorted(client.scopes)),
        "token_format": client.token_format,
        "skip_consent": client.skip_consent,
        "disabled": client.disabled,
        "owner": client.owner,  # the developer portal's registrant (docs/portal.md)
        "approval": client.approval,
        "name": client.name,
        "jwks_uri": client.jwks_uri,
        # The registered keys by kid (the keys are public, but a list of ids is what one checks).
        "jwks_kids": [key.get("kid") for key in json.loads(client.jwks)["keys"]]
        if client.jwks
        else [],
        "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
        "require_signed_request_object": client.require_signed_request_object,
        "profile": client.profile,
        "min_acr": client.min_acr,
        "exchange_audiences": list(client.exchange_audiences),
        "exchange_impersonation": client.exchange_impersonation,
        **{name: getattr(client, name) for name in SUBJECT_FIELDS if getattr(client, name)},
        "tls_client_certificate_bound_access_tokens": (
            client.tls_client_certificate_bound_access_tokens
        ),
        "access_token_alg": client.access_token_alg,
        "id_token_signed_response_alg": client.id_token_alg,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
    }


def user_view(user: UserRecord) -> dict[str, Any]:
    """What an operator may see of a user: never the password hash."""
    return {
        "user_id": user.user_id,
        "username": user.username,
        "disabled": user.disabled,
        "admin": is_admin(user),
        "created_at": iso_time(user.created_at),
        "password_changed_at": iso_time(user.password_changed_at),
    }


def iso_time(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC, to the second: `2026-12-04T17:51:00Z`."""
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def is_admin(user: UserRecord) -> bool:
    """An admin is a user whose stored claims list the role `tokenward:admin` under `roles`."""
    try:
        roles = json.loads(user.claims or "{}").get("roles", [])
    except (ValueError, AttributeError):
        return False
    return isinstance(roles, list) and ADMIN_ROLE in roles
