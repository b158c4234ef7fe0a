"""A client's public keys (JWKS document or jwks_uri), checked before it is registered."""

from __future__ import annotations

import json
from collections.abc import Mapping

from tokenward.core.errors import JoseError
from tokenward.oauth import client_uris
from tokenward.services.errors import AdminError
from tokenward.tokens.jwk import PRIVATE_MEMBERS, key_set_from_jwks
from tokenward.tokens.jws import loads_object


def check_jwks_uri(url: str) -> None:
    """https, as for issuers (RFC 7591 §2 asks TLS of it); plain http only on loopback."""
    try:
        client_uris.check_uri(url, "jwks_uri")
    except client_uris.UriError as exc:
        raise AdminError(str(exc)) from None


def public_key_set(document: str) -> str:
    """A client's JWKS, loaded as the token endpoint will load it (tokens.jwk: pinned algorithms,
    no weak keys, no duplicate kids) and kept as public keys only. Private or secret members
    are refused: the server must never hold a client's private key."""
    try:
        parsed = loads_object(document.encode())
    except JoseError:
        raise AdminError("the JWKS must be a JSON object (strict: no duplicate members)") from None
    entries = parsed.get("keys")
    if isinstance(entries, list) and any(
        isinstance(entry, Mapping) and PRIVATE_MEMBERS & entry.keys() for entry in entries
    ):
        raise AdminError(
            "the JWKS holds private or secret key members "
            f"({', '.join(sorted(PRIVATE_MEMBERS))}): register the public keys only"
        )
    try:
        keys = key_set_from_jwks(parsed)
    except JoseError as exc:
        raise AdminError(f"the JWKS is refused: {exc}") from None
    public = [dict(key.public_jwk) for key in keys.values() if key.public_jwk is not None]
    if not public:
        raise AdminError("the JWKS holds no signature key")
    return json.dumps({"keys": public}, sort_keys=True)
