"""One log line per refused OAuth request: why, for which client, from where.

What goes in is fixed by this module: the endpoint, the error code and its fixed description
(oauth/errors.py, core/errors.py: our own phrases, never request material), the client_id the
request authenticated as or asserted, and the peer address. Never a token, code, secret or
assertion: callers hand over only those fields, so nothing else can slip in.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from tokenward.oauth.client_auth import presented_credentials
from tokenward.oauth.errors import OAuthError

log = structlog.get_logger("tokenward.refusals")
MAX_CLIENT_ID = 64  # an unknown client's id is whatever it sent: keep log lines bounded
# Answers a well-behaved client gets in the normal course of its protocol (a device poll before
# approval, the first DPoP request learning the nonce): not refusals, and one per poll.
PROTOCOL_SIGNALS = frozenset({"authorization_pending", "use_dpop_nonce"})


def log_refusal(
    endpoint: str,
    error: str,
    description: str,
    *,
    client_id: str | None,
    client_ip: str | None,
) -> None:
    if error in PROTOCOL_SIGNALS:
        return
    log.info(
        "oauth_refused",
        endpoint=endpoint,
        error=error,
        error_description=description,
        client_id=_printable(client_id) if client_id else None,
        client_ip=client_ip,
    )


def asserted_client_id(params: Mapping[str, str], authorization: str | None) -> str | None:
    """The client_id a request names (Basic user, client_id, or its assertion's sub)."""
    try:
        return presented_credentials(params, authorization).client_id
    except OAuthError:
        return params.get("client_id")


def _printable(value: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in value[:MAX_CLIENT_ID])
