"""Security profiles: the one place that says what `baseline` and `fapi2` (the FAPI 2.0 Security
Profile's authorization-server requirements) allow.

A profile is a frozen set of constraints. The checks that already exist (authorization
requests, PAR, client authentication, request objects, the token endpoint, refresh) ask the
profile of the client in front of them instead of testing a profile's name, so adding a rule
means adding a field here and reading it where the rule applies. A client is held to the
stricter of its own profile and the deployment's (`TOKENWARD_PROFILE`): the server-wide
setting raises every client, a client's setting raises only that client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from tokenward.core.records import ClientRecord

# FAPI 2.0 Security Profile §5.4: PS256, ES256 and EdDSA (Ed25519) only, in the spec's order
# (the order error messages name them in).
FAPI2_ALG_LIST = ("PS256", "ES256", "EdDSA")
FAPI2_ALGS = frozenset(FAPI2_ALG_LIST)
# §5.3.2.1: private_key_jwt or mTLS client authentication only.
FAPI2_AUTH_METHODS = frozenset(
    {"private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"}
)


class UnknownProfile(ValueError):
    """A profile name that is neither baseline nor fapi2."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str  # the specification, as error messages name it
    strictness: int  # the higher wins when the client's and the deployment's differ
    # Authorization requests only through /par (RFC 9126), and the push names redirect_uri.
    require_par: bool
    par_redirect_uri_required: bool
    # Every access token sender-constrained: DPoP (RFC 9449) or mTLS (RFC 8705).
    sender_constrained: bool
    auth_methods: frozenset[str] | None  # None: every method the server has
    # Client JWTs, DPoP proofs, ID and access tokens, registered keys; None: any. A tuple, in
    # the order the specification lists them.
    signing_algs: tuple[str, ...] | None
    # private_key_jwt: `aud` must be the issuer, as a string (not the token endpoint, no array).
    assertion_audience_is_issuer: bool
    # iat / nbf of client JWTs may be this far in the future (FAPI 2.0 §5.3.2.1: accept up to
    # 10 s, refuse more than 60 s); None: the request-object leeway, no iat check on assertions.
    future_skew: float | None
    code_lifetime: int  # seconds an authorization code lives
    rotate_refresh_tokens: bool  # False: the refresh token stays, bound to client (and key)
    redirect_status: int  # 303 See Other after a POST (FAPI 2.0 §5.3.2.2, RFC 9700 §4.12)
    # http redirect URIs only for native apps on a loopback IP literal (no `localhost`).
    http_redirect_ip_loopback_only: bool
    # Not fields, because every profile has them: PKCE S256 (oauth/pkce.py), response_type
    # code (oauth/authorize.py), `iss` in responses (RFC 9207), RSA keys of 2048 bits or more
    # (tokens/jwk.py).

    def allows_alg(self, alg: str) -> bool:
        return self.signing_algs is None or alg in self.signing_algs

    def alg_refusal(self, alg: str, what: str = "") -> str | None:
        """Why `alg` may not sign `what` under this profile, as an error description names it
        (None: it may). ML-DSA is refused by name: FAPI 2.0 §5.4 lists no post-quantum
        algorithm, and a client trying one should learn that rather than guess."""
        if self.allows_alg(alg):
            return None
        shown = alg[:20]
        listed = "/".join(self.signing_algs or ())
        reason = (
            f"the {self.name} profile does not allow {shown}{' ' + what if what else ''}: "
            f"{shown} is not in {self.title}'s {listed} list (§5.4)"
        )
        if alg.startswith("ML-DSA-"):
            reason += "; post-quantum ML-DSA (RFC 9964) is not among them yet"
        return reason

    def allows_method(self, method: str) -> bool:
        return self.auth_methods is None or method in self.auth_methods


BASELINE = Profile(
    name="baseline",
    title="OAuth 2.1",
    strictness=0,
    require_par=False,
    par_redirect_uri_required=False,
    sender_constrained=False,
    auth_methods=None,
    signing_algs=None,
    assertion_audience_is_issuer=False,
    future_skew=None,
    code_lifetime=60,
    rotate_refresh_tokens=True,
    redirect_status=302,
    http_redirect_ip_loopback_only=False,
)

FAPI2 = Profile(
    name="fapi2",
    title="FAPI 2.0",
    strictness=1,
    require_par=True,
    par_redirect_uri_required=True,
    sender_constrained=True,
    auth_methods=FAPI2_AUTH_METHODS,
    signing_algs=FAPI2_ALG_LIST,
    assertion_audience_is_issuer=True,
    future_skew=10.0,
    code_lifetime=60,
    rotate_refresh_tokens=False,
    redirect_status=303,
    http_redirect_ip_loopback_only=True,
)

PROFILES = {profile.name: profile for profile in (BASELINE, FAPI2)}


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"profile must be one of {', '.join(PROFILES)}") from None


def stricter(a: Profile, b: Profile) -> Profile:
    return a if a.strictness >= b.strictness else b


class Profiles:
    """The profile each client is held to: its own or the deployment's, whichever is stricter."""

    def __init__(self, server: Profile = BASELINE) -> None:
        self.server = server

    def for_client(self, client: ClientRecord) -> Profile:
        # A name this release does not know (a newer one's) holds the client to the strictest.
        return stricter(self.server, PROFILES.get(client.profile, FAPI2))

    def named(self, name: str) -> Profile:
        """The profile a stored request names (sealed before sign-in), never below the
        deployment's."""
        return stricter(self.server, PROFILES.get(name, FAPI2))


def redirect_uri_problem(profile: Profile, uri: str) -> str | None:
    """Why `uri` may not be a redirect URI under `profile` (None: it may)."""
    parts = urlsplit(uri)
    if (
        profile.http_redirect_ip_loopback_only
        and parts.scheme.lower() == "http"
        and parts.hostname not in ("127.0.0.1", "::1")
    ):
        return f"the {profile.name} profile allows http only for native apps on 127.0.0.1 or [::1]"
    return None
