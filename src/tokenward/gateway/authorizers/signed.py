"""`auth: signed_url`: a signed link (docs/signed-urls.md) instead of a token.

Checked on the resolved path (the one forwarded, gateway/paths.py; `request_path` reads it from
the scope) and forwarded without its `tw_` parameters; a subject bound into the link goes
upstream as the subject header.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Scope

from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.authorizers.base import Authorized, Headers
from tokenward.gateway.compiled import SignatureCheck
from tokenward.gateway.headers import Incoming, safe_header_value
from tokenward.gateway.policy import Denied
from tokenward.signedurl import Reason
from tokenward.signedurl.asgi import request_path, unsigned_query

SIGNATURE_REFUSALS = {
    Reason.MISSING: "this route serves signed links only; the link has no signature",
    Reason.MALFORMED: "the signed link is malformed or ambiguous",
    Reason.UNKNOWN_KEY: "the link is signed with a key this gateway does not know",
    Reason.BAD_SIGNATURE: "the link's signature does not match",
    Reason.EXPIRED: "the link has expired",
    Reason.NOT_YET_VALID: "the link is not valid yet",
    Reason.WRONG_IP: "the link was issued for another client address",
    Reason.WRONG_PATH: "the link does not cover this path",
}


class SignedLinks:
    __slots__ = ("_check", "_clock", "_identity_headers")

    def __init__(
        self,
        check: SignatureCheck,
        identity_headers: dict[str, str],
        clock: Callable[[], float],
    ) -> None:
        self._check = check  # the route's Verifier.verify_request, keys pre-hashed (compiled.py)
        self._identity_headers = identity_headers
        self._clock = clock

    async def authorize(
        self, scope: Scope, incoming: Incoming, scheme: str, record: AuditRecord
    ) -> Authorized:
        query = scope["query_string"].decode("utf-8", "surrogateescape")
        verdict = self._check(request_path(scope), query, record.ip, self._clock())
        if verdict.reason is not None:
            reason = verdict.reason
            raise Denied(verdict.status, str(reason), SIGNATURE_REFUSALS[reason])
        kept = unsigned_query(query).encode("utf-8", "surrogateescape")
        added: Headers = []
        if verdict.subject:
            name = self._identity_headers["subject"].encode("latin-1")
            added.append((name, safe_header_value(verdict.subject)))
        return {**scope, "query_string": kept}, None, added
