"""Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenward.core.revocation_wire import METADATA_FIELD, PATH
from tokenward.oauth.client_auth import METHODS
from tokenward.tokens.dpop import PROOF_ALGS

ASSERTION_ALGS = ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"]


def metadata(
    issuer: str,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    signing_algs: Sequence[str],
    *,
    openid: bool,
    revocation_feed: bool = True,
    require_par: bool = False,
    require_signed: bool = False,
) -> dict[str, Any]:
    base = issuer.rstrip("/")
    document: dict[str, Any] = {
        "issuer": issuer,  # RFC 8414 §3.3: identical to the issuer we sign with
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "introspection_endpoint": f"{base}/introspect",
        "revocation_endpoint": f"{base}/revoke",
        "device_authorization_endpoint": f"{base}/device_authorization",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(grant_types),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(METHODS),
        # RFC 8414 §2: required wherever private_key_jwt is listed
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [m for m in METHODS if m != "none"],
        "revocation_endpoint_auth_methods_supported": list(METHODS),
        "scopes_supported": list(scopes),
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "introspection_signing_alg_values_supported": list(signing_algs),
        "dpop_signing_alg_values_supported": list(PROOF_ALGS),  # RFC 9449 §5.1
        # PAR (RFC 9126 §5) and JAR (RFC 9101 §10.5). request_uri: only ours from /par, which
        # RFC 9126 §5 says needs no request_uri_parameter_supported; we never fetch one.
        "pushed_authorization_request_endpoint": f"{base}/par",
        "require_pushed_authorization_requests": require_par,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "request_object_signing_alg_values_supported": ASSERTION_ALGS,
        "require_signed_request_object": require_signed,
    }
    if revocation_feed:  # a tokenward extension: the log RemoteRevocations follows
        document[METADATA_FIELD] = base + PATH
    if openid:
        document.update(
            {
                "userinfo_endpoint": f"{base}/userinfo",
                "end_session_endpoint": f"{base}/logout",
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": sorted({"RS256", *signing_algs}),
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "acr",
                    "sid",
                    "name",
                    "email",
                    "preferred_username",
                ],
                "prompt_values_supported": ["none", "login", "consent"],
            }
        )
    return document
