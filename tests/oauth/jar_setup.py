"""Request objects for the PAR/JAR tests, signed by jwcrypto (a third party, so what we verify is
what others produce), and the client records that register their keys."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

JAR_TYPE = "oauth-authz-req+jwt"


def new_key(kty: str = "EC", kid: str | None = None, alg: str = "ES256") -> jwk.JWK:
    kid = kid or secrets.token_hex(4)
    if kty == "EC":
        return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid, alg=alg)
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, alg=alg)


def public_jwks(*keys: jwk.JWK) -> str:
    return json.dumps({"keys": [key.export_public(as_dict=True) for key in keys]})


def request_object(
    key: jwk.JWK,
    claims: dict[str, Any],
    *,
    alg: str | None = None,
    typ: str | None = JAR_TYPE,
    kid: str | None = "key's",
) -> str:
    header: dict[str, Any] = {"alg": alg or key.get("alg")}
    if typ is not None:
        header["typ"] = typ
    if kid is not None:
        header["kid"] = key.get("kid") if kid == "key's" else kid
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, None, json_encode(header))
    return str(token.serialize(compact=True))


def claims_for(
    client_id: str, audience: str, now: float | None = None, /, **params: Any
) -> dict[str, Any]:
    """A request object's claims: the JWT's own and the authorization request's."""
    now = time.time() if now is None else now
    return {
        "iss": client_id,
        "aud": audience,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 300,
        "jti": secrets.token_urlsafe(12),
        "client_id": client_id,
        **params,
    }
