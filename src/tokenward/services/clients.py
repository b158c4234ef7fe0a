"""Client registration and its changes by the operator: create, disable, rotate the secret."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from tokenward.core.assurance import LEVELS
from tokenward.core.ports import ClientStore
from tokenward.core.records import APPROVED, REJECTED, ClientRecord
from tokenward.oauth import client_uris
from tokenward.oauth.client_auth import METHODS, SecretHasher
from tokenward.oauth.mtls import (
    KEY_METHODS,
    MTLS_METHODS,
    SUBJECT_FIELDS,
    check_registration,
    normalized_dn,
)
from tokenward.oauth.profiles import Profile, Profiles, UnknownProfile, profile_named
from tokenward.oauth.profiles import redirect_uri_problem as profile_redirect_problem
from tokenward.services.client_keys import check_jwks_uri, public_key_set
from tokenward.services.errors import AdminError, RedirectUriError
from tokenward.services.revoking import Watermarks
from tokenward.services.views import client_view
from tokenward.tokens.algorithms import ALGORITHMS, GENERATED
from tokenward.tokens.jwk import key_set_from_jwks

GRANT_TYPES = (
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


class ClientAdmin:
    def __init__(
        self,
        clients: ClientStore,
        hasher: SecretHasher,
        watermarks: Watermarks,
        clock: Callable[[], float],
        profiles: Profiles | None = None,
        signing_algs: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """`signing_algs`: the algorithms the deployment holds an active key for (None: not
        checked); a client pinned to another is refused at registration."""
        self._signing_algs = signing_algs
        self._profiles = profiles or Profiles()
        self._clients = clients
        self._hasher = hasher
        self._watermarks = watermarks
        self._clock = clock

    async def create_client(
        self,
        client_id: str,
        *,
        grant_types: list[str],
        scope: str,
        redirect_uris: list[str],
        secret: str | None = None,
        public: bool = False,
        auth_method: str | None = None,
        token_format: str = "jwt",
        skip_consent: bool = False,
        audience: list[str] | None = None,
        jwks: str | None = None,
        jwks_uri: str | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        exchange_audiences: list[str] | None = None,
        exchange_impersonation: bool = False,
        tls_subject: dict[str, str] | None = None,
        tls_bound_tokens: bool | None = None,
        access_token_alg: str | None = None,
        id_token_signed_response_alg: str | None = None,
        backchannel_logout_uri: str | None = None,
        backchannel_logout_session_required: bool = False,
        require_par: bool = False,
        require_signed_request_object: bool = False,
        profile: str = "baseline",
        min_acr: str | None = None,
    ) -> dict[str, Any]:
        """`jwks` (JWKS JSON text) or `jwks_uri` (where the client publishes it): the public keys
        the client signs with: its private_key_jwt assertions (that method needs them) and its
        request objects (JAR, RFC 9101; `require_signed_request_object` needs them). Every
        URI is checked here, the one place all registrations pass (oauth/client_uris.py says
        how). `exchange_audiences` and `exchange_impersonation`: the client's token exchange
        policy (docs/token-exchange.md). `tls_subject`: for tls_client_auth, the one certificate
        field (tls_client_auth_subject_dn / _san_dns / _san_uri / _san_ip / _san_email) the
        client's certificate must carry; `tls_bound_tokens`: bind its access tokens to the
        certificate it presents (default: yes for the mTLS methods), RFC 8705, docs/mtls.md.
        `require_par`: its authorization requests only through /par (RFC 9126).
        `access_token_alg` and `id_token_signed_response_alg`: the algorithms
        its tokens are signed with (docs/post-quantum.md; ID tokens: RS256 by default, ES256
        under fapi2). `profile`: baseline or fapi2 (docs/fapi2.md); the metadata must keep
        every rule of the stricter of it and the deployment's profile. `min_acr`: the weakest
        sign-in its users may have (docs/second-factors.md)."""
        if await self._clients.get(client_id) is not None:
            raise AdminError(f"client {client_id!r} exists already")
        client, secret = self.build_client(
            client_id,
            grant_types=grant_types,
            scope=scope,
            redirect_uris=redirect_uris,
            secret=secret,
            public=public,
            auth_method=auth_method,
            token_format=token_format,
            skip_consent=skip_consent,
            audience=audience,
            jwks=jwks,
            jwks_uri=jwks_uri,
            post_logout_redirect_uris=post_logout_redirect_uris,
            exchange_audiences=exchange_audiences,
            exchange_impersonation=exchange_impersonation,
            tls_subject=tls_subject,
            tls_bound_tokens=tls_bound_tokens,
            access_token_alg=access_token_alg,
            id_token_signed_response_alg=id_token_signed_response_alg,
            backchannel_logout_uri=backchannel_logout_uri,
            backchannel_logout_session_required=backchannel_logout_session_required,
            require_par=require_par,
            require_signed_request_object=require_signed_request_object,
            profile=profile,
            min_acr=min_acr,
        )
        await self._clients.put(client)
        view = client_view(client)
        if secret is not None:
            view["client_secret"] = secret  # shown once; only its digest is stored
        return view

    def build_client(
        self,
        client_id: str,
        *,
        grant_types: list[str],
        scope: str,
        redirect_uris: list[str],
        secret: str | None = None,
        public: bool = False,
        auth_method: str | None = None,
        token_format: str = "jwt",
        skip_consent: bool = False,
        audience: list[str] | None = None,
        jwks: str | None = None,
        jwks_uri: str | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        exchange_audiences: list[str] | None = None,
        exchange_impersonation: bool = False,
        tls_subject: dict[str, str] | None = None,
        tls_bound_tokens: bool | None = None,
        access_token_alg: str | None = None,
        id_token_signed_response_alg: str | None = None,
        backchannel_logout_uri: str | None = None,
        backchannel_logout_session_required: bool = False,
        require_par: bool = False,
        require_signed_request_object: bool = False,
        profile: str = "baseline",
        min_acr: str | None = None,
        name: str = "",
        created_at: float | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """The one validation path of every registration (CLI, admin API, console, dynamic
        registration): the client record, checked, and its new secret in clear (None for
        clients without one). Stores nothing: the caller decides where the record goes.
        A redirect URI refused raises `RedirectUriError` (RFC 7591 names that case apart)."""
        _check_acr(min_acr)
        effective = self._effective(profile)
        id_token_signed_response_alg = id_token_signed_response_alg or _id_token_alg(
            effective, self._signing_algs() if self._signing_algs is not None else None
        )
        _check_signing_algs(access_token_alg, id_token_signed_response_alg)
        if jwks is not None and jwks_uri is not None:
            raise AdminError("give the client's keys (--jwks) or where to fetch them (--jwks-uri)")
        keys = jwks is not None or jwks_uri is not None
        method = _auth_method(auth_method, public=public, keys=keys)
        key_set = public_key_set(jwks) if jwks is not None else None
        redirects, after_logout = _checked_uris(redirect_uris, post_logout_redirect_uris, jwks_uri)
        subject = _tls_subject(method, tls_subject or {}, keys=keys)
        bound = method in MTLS_METHODS if tls_bound_tokens is None else tls_bound_tokens
        _check_grants_and_format(grant_types, token_format)
        if backchannel_logout_uri is not None:
            try:  # OpenID Back-Channel Logout 1.0 §2.2: https (http on loopback here)
                client_uris.check_uri(backchannel_logout_uri, "backchannel_logout_uri")
            except client_uris.UriError as exc:
                raise AdminError(str(exc)) from None
        if method == "none" and TOKEN_EXCHANGE in grant_types:  # RFC 8693 needs who exchanges
            raise AdminError("token exchange is for confidential clients only")
        if method == "none" and "client_credentials" in grant_types:  # RFC 6749 §4.4
            raise AdminError("client_credentials is for confidential clients only")
        if require_signed_request_object and not keys:
            raise AdminError(
                "signed request objects need the client's public keys (--jwks or --jwks-uri)"
            )
        _check_profile(
            effective,
            method=method,
            redirect_uris=redirects,
            key_set=key_set,
            algs=(access_token_alg, id_token_signed_response_alg),
        )
        # After the profile: "FAPI 2.0 does not allow ML-DSA" is the answer, not "add a key".
        self._check_signing_keys(access_token_alg, id_token_signed_response_alg, token_format)
        if method in SECRET_METHODS:
            secret = secret or SecretHasher.generate()
            if len(secret) < 32:
                raise AdminError(
                    "client secrets need at least 32 characters (256 bits recommended)"
                )
        client = ClientRecord(
            client_id=client_id,
            auth_method=method,
            grant_types=tuple(grant_types),
            scopes=frozenset(scope.split()),
            created_at=self._clock() if created_at is None else created_at,
            secret_digest=self._hasher.digest(secret) if secret else None,
            redirect_uris=redirects,
            post_logout_redirect_uris=after_logout,
            audience=tuple(audience or ()),
            token_format=token_format,
            skip_consent=skip_consent,
            jwks=key_set,
            jwks_uri=jwks_uri,
            exchange_audiences=tuple(dict.fromkeys(exchange_audiences or ())),
            exchange_impersonation=exchange_impersonation,
            tls_client_certificate_bound_access_tokens=bound,
            tls_client_auth_subject_dn=subject.get("tls_client_auth_subject_dn"),
            tls_client_auth_san_dns=subject.get("tls_client_auth_san_dns"),
            tls_client_auth_san_uri=subject.get("tls_client_auth_san_uri"),
            tls_client_auth_san_ip=subject.get("tls_client_auth_san_ip"),
            tls_client_auth_san_email=subject.get("tls_client_auth_san_email"),
            access_token_alg=access_token_alg,
            id_token_alg=id_token_signed_response_alg,
            backchannel_logout_uri=backchannel_logout_uri,
            backchannel_logout_session_required=backchannel_logout_session_required,
            require_pushed_authorization_requests=require_par,
            require_signed_request_object=require_signed_request_object,
            name=name,
            profile=profile,
            min_acr=min_acr,
        )
        return client, secret if secret and method != "none" else None

    def _check_signing_keys(
        self, access_token_alg: str | None, id_token_alg: str, token_format: str
    ) -> None:
        """Fail closed at registration: tokens pinned to an algorithm the deployment holds no
        active key for would be refused at every request (they are never signed in another)."""
        if self._signing_algs is None:
            return
        available = self._signing_algs()
        pinned = {"id_token_alg": id_token_alg}
        if token_format == "jwt" and access_token_alg is not None:
            pinned["access_token_alg"] = access_token_alg
        for name, alg in pinned.items():
            if alg not in available:
                raise AdminError(
                    f"{name} {alg}: this deployment holds no active {alg} signing key; add "
                    f"{alg} to TOKENWARD_SIGNING_ALGS first (it has {', '.join(sorted(available))})"
                )

    def _effective(self, profile: str) -> Profile:
        """The profile a client registered with `profile` is held to."""
        try:
            return self._profiles.named(profile_named(profile).name)
        except UnknownProfile as exc:
            raise AdminError(str(exc)) from None

    async def set_client_disabled(self, client_id: str, disabled: bool) -> dict[str, Any]:
        client = await self._clients.get(client_id)
        if client is None:
            raise AdminError(f"no client {client_id!r}")
        await self._clients.put(replace(client, disabled=disabled))
        if disabled:
            await self._watermarks.revoke(client=client_id)
        return client_view(replace(client, disabled=disabled))

    async def set_client_approval(self, client_id: str, approved: bool) -> dict[str, Any]:
        """The operator's decision on a client registered in the developer portal
        (docs/portal.md): approved, it may get tokens; rejected, it never does, and whatever
        it might hold is revoked."""
        client = await self._clients.get(client_id)
        if client is None:
            raise AdminError(f"no client {client_id!r}")
        changed = replace(client, approval=APPROVED if approved else REJECTED)
        await self._clients.put(changed)
        if not approved:
            await self._watermarks.revoke(client=client_id)
        return client_view(changed)

    async def rotate_client_secret(self, client_id: str) -> dict[str, Any]:
        client = await self._clients.get(client_id)
        if client is None or client.auth_method not in SECRET_METHODS:
            raise AdminError(f"no confidential client {client_id!r} with a secret")
        secret = SecretHasher.generate()
        await self._clients.put(replace(client, secret_digest=self._hasher.digest(secret)))
        return {**client_view(client), "client_secret": secret}

    async def set_client_keys(
        self, client_id: str, *, jwks: str | None = None, jwks_uri: str | None = None
    ) -> dict[str, Any]:
        """Replace the client's public keys (a rotation): a JWKS document or a jwks_uri, checked
        as at registration. Assertions and request objects signed with the old keys stop
        verifying at once; a jwks_uri lets the client rotate on its own instead."""
        client = await self._clients.get(client_id)
        if client is None:
            raise AdminError(f"no client {client_id!r}")
        if (jwks is None) == (jwks_uri is None):
            raise AdminError("give the client's keys (jwks) or where to fetch them (jwks_uri)")
        key_set = public_key_set(jwks) if jwks is not None else None
        if jwks_uri is not None:
            check_jwks_uri(jwks_uri)
        _check_profile_keys(self._profiles.for_client(client), key_set)
        if client.auth_method == "none":
            raise AdminError("public clients have no keys to register")
        changed = replace(client, jwks=key_set, jwks_uri=jwks_uri)
        await self._clients.put(changed)
        return client_view(changed)

    async def set_min_acr(self, client_id: str, min_acr: str | None) -> dict[str, Any]:
        """The weakest sign-in the client accepts from now on (None: any). Tokens already
        issued keep their acr; the client's next authorization asks for the factor."""
        _check_acr(min_acr)
        client = await self._clients.get(client_id)
        if client is None:
            raise AdminError(f"no client {client_id!r}")
        await self._clients.put(replace(client, min_acr=min_acr))
        return client_view(replace(client, min_acr=min_acr))

    async def get(self, client_id: str) -> ClientRecord | None:
        return await self._clients.get(client_id)

    def secret_matches(self, secret: str, digest: str | None) -> bool:
        """Constant time: is `secret` the one whose digest is stored?"""
        return self._hasher.matches(secret, digest)


def _check_grants_and_format(grant_types: list[str], token_format: str) -> None:
    unknown = [grant for grant in grant_types if grant not in GRANT_TYPES]
    if unknown or not grant_types:
        raise AdminError(f"grant types must be among {', '.join(GRANT_TYPES)}")
    if token_format not in ("jwt", "opaque"):
        raise AdminError("token format must be jwt or opaque")


def _auth_method(requested: str | None, *, public: bool, keys: bool) -> str:
    default = "private_key_jwt" if keys else "none" if public else "client_secret_basic"
    method = requested or default
    if method not in METHODS:
        raise AdminError(f"auth method must be one of {', '.join(METHODS)}")
    if method in KEY_METHODS and not keys:
        raise AdminError(f"{method} clients need their public keys (--jwks or --jwks-uri)")
    if method == "none" and keys:  # a public client's signature proves nothing: no secret key
        raise AdminError("public clients have no keys to register")
    if public != (method == "none"):
        raise AdminError("public clients use auth method none, and only they do")
    return method


def _tls_subject(method: str, given: dict[str, str], *, keys: bool) -> dict[str, str]:
    """The registered certificate subject, checked (RFC 8705 §2.1.2) and the DN normalised to
    the RFC 4514 text certificates are compared in."""
    unknown = set(given) - set(SUBJECT_FIELDS)
    if unknown:
        raise AdminError(f"unknown certificate subject fields: {', '.join(sorted(unknown))}")
    subject = {name: value.strip() for name, value in given.items() if value and value.strip()}
    try:
        check_registration(method, subject, has_keys=keys)
        dn = subject.get("tls_client_auth_subject_dn")
        if dn is not None:
            subject["tls_client_auth_subject_dn"] = normalized_dn(dn)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    return subject


def _checked_uris(
    redirects: list[str], after_logout: list[str] | None, jwks_uri: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The redirect and post-logout redirect URIs, checked (duplicates dropped); the jwks_uri
    checked too."""
    if jwks_uri is not None:
        check_jwks_uri(jwks_uri)
    try:
        checked = client_uris.redirect_uris(redirects)
    except client_uris.UriError as exc:
        raise RedirectUriError(str(exc)) from None
    try:
        return checked, client_uris.redirect_uris(after_logout or [], "post-logout redirect URI")
    except client_uris.UriError as exc:
        raise AdminError(str(exc)) from None


def _check_signing_algs(access_token_alg: str | None, id_token_alg: str) -> None:
    """Algorithms a deployment can generate keys for; a symmetric one would need the client's
    secret as the key, which we never keep."""
    for name, value in (("access_token_alg", access_token_alg), ("id_token_alg", id_token_alg)):
        if value is not None and (value not in GENERATED or ALGORITHMS[value].symmetric):
            choices = ", ".join(alg for alg in GENERATED if not ALGORITHMS[alg].symmetric)
            raise AdminError(f"{name} must be one of {choices}")


def _check_profile(
    profile: Profile,
    *,
    method: str,
    redirect_uris: tuple[str, ...],
    key_set: str | None,
    algs: tuple[str | None, ...],
) -> None:
    """Registration refuses metadata the client's profile would refuse at every request."""
    if not profile.allows_method(method):
        allowed = ", ".join(sorted(profile.auth_methods or ()))
        raise AdminError(f"the {profile.name} profile allows only these auth methods: {allowed}")
    for uri in redirect_uris:
        problem = profile_redirect_problem(profile, uri)
        if problem is not None:
            raise AdminError(f"redirect URI {uri[:80]!r}: {problem}")
    for name, alg in zip(("access_token_alg", "id_token_alg"), algs, strict=True):
        refusal = profile.alg_refusal(alg, f"as {name}") if alg is not None else None
        if refusal is not None:
            raise AdminError(refusal)
    _check_profile_keys(profile, key_set)


def _check_profile_keys(profile: Profile, key_set: str | None) -> None:
    """Every registered key pinned to an algorithm the profile allows (public_key_set has
    already refused RSA below 2048 bits, for every profile)."""
    if key_set is None:
        return
    for key in key_set_from_jwks(json.loads(key_set)).values():
        refusal = profile.alg_refusal(key.alg.name, "keys")
        if refusal is not None:
            raise AdminError(f"key {str(key.kid)[:40]!r}: {refusal}")


def _id_token_alg(profile: Profile, available: Collection[str] | None = None) -> str:
    """The default ID token algorithm: RS256 (OIDC Core §15.1); where the profile forbids it,
    ES256, else the first the profile allows that the deployment holds a key for (ES256 when
    none does, which registration then refuses naming the setting to change)."""
    if profile.allows_alg("RS256"):
        return "RS256"
    for alg in ("ES256", *(profile.signing_algs or ())):
        if available is not None and alg in available and profile.allows_alg(alg):
            return alg
    return "ES256"


def _check_acr(min_acr: str | None) -> None:
    if min_acr is not None and min_acr not in LEVELS:
        raise AdminError(f"min_acr must be one of {', '.join(LEVELS)}")
