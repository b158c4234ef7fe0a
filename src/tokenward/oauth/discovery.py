"""Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenward.core.assurance import LEVELS
from tokenward.core.revocation_wire import METADATA_FIELD, PATH
from tokenward.oauth.client_auth import METHODS
from tokenward.oauth.mtls import MTLS_METHODS
from tokenward.oauth.profiles import BASELINE, Profile
from tokenward.tokens.dpop import PROOF_ALGS

# private_key_jwt: every asymmetric algorithm a client key may be pinned to (RFC 9964 included).
ASSERTION_ALGS = [*PROOF_ALGS]


def metadata(
    issuer: str,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    signing_algs: Sequence[str],
    *,
    openid: bool,
    revocation_feed: bool = True,
    mtls_base: str | None = None,
    require_par: bool = False,
    require_signed: bool = False,
    registration: bool = False,
    profile: Profile = BASELINE,
) -> dict[str, Any]:
    """`mtls_base`: where clients reach the endpoints with a TLS client certificate (RFC 8705
    §5), None when no certificate can reach this server. `profile`: the deployment's, which
    narrows what is offered (a fapi2 server lists only what FAPI 2.0 allows)."""
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
        "require_pushed_authorization_requests": require_par or profile.require_par,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "request_object_signing_alg_values_supported": ASSERTION_ALGS,
        "require_signed_request_object": require_signed,
    }
    if mtls_base is not None:
        document["tls_client_certificate_bound_access_tokens"] = True  # RFC 8705 §3.3
        alias = mtls_base.rstrip("/")
        document["mtls_endpoint_aliases"] = {
            name: alias + document[name][len(base) :]
            for name in (
                "token_endpoint",
                "introspection_endpoint",
                "revocation_endpoint",
                "device_authorization_endpoint",
                "pushed_authorization_request_endpoint",
            )
        }
    else:  # no certificate can reach us: do not advertise methods that would always fail
        for name in (
            "token_endpoint_auth_methods_supported",
            "introspection_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported",
        ):
            document[name] = [m for m in document[name] if m not in MTLS_METHODS]
    if registration:  # RFC 8414 §2, RFC 7591 §3: only when dynamic registration is on
        document["registration_endpoint"] = f"{base}/register"
    _narrow(document, profile)
    if revocation_feed:  # a tokenward extension: the log RemoteRevocations follows
        document[METADATA_FIELD] = base + PATH
    if openid:
        document.update(
            {
                "userinfo_endpoint": f"{base}/userinfo",
                "end_session_endpoint": f"{base}/logout",
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [
                    alg for alg in sorted({"RS256", *signing_algs}) if profile.allows_alg(alg)
                ],
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "acr",
                    "amr",
                    "sid",
                    "name",
                    "email",
                    "preferred_username",
                ],
                "prompt_values_supported": ["none", "login", "consent"],
                # Weakest first (core/assurance.py): password, + one-time code, passkey.
                "acr_values_supported": list(LEVELS),
                # OpenID Back-Channel Logout 1.0 §2.1: logout tokens always carry sid.
                "backchannel_logout_supported": True,
                "backchannel_logout_session_supported": True,
            }
        )
    return document


def _narrow(document: dict[str, Any], profile: Profile) -> None:
    """Only the methods and algorithms the deployment's profile lets every client use."""
    for name, values in document.items():
        if name.endswith("_auth_methods_supported"):
            document[name] = [m for m in values if profile.allows_method(m)]
        elif (
            name.endswith("_alg_values_supported")
            and name != "id_token_signing_alg_values_supported"
        ):
            document[name] = [alg for alg in values if profile.allows_alg(alg)]
