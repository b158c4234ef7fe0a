"""Administrative actions shared by the CLI, the admin console and the admin API: clients, users,
sessions, keys, revocation. Each returns plain data for JSON output."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from argon2 import PasswordHasher

from tokenward.core.errors import JoseError
from tokenward.core.ports import Conflict
from tokenward.core.records import ClientRecord, Revocation, RevocationKind, UserRecord
from tokenward.deploy.wiring import Services
from tokenward.oauth import client_uris
from tokenward.oauth.client_auth import METHODS, SecretHasher
from tokenward.tokens.jwk import PRIVATE_MEMBERS, key_set_from_jwks
from tokenward.tokens.jws import loads_object

GRANT_TYPES = (
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
)
PASSWORDS = PasswordHasher()  # argon2id with the library's current recommended parameters


class AdminError(ValueError):
    """A request the operator must correct; the message says how."""


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
        "jwks_uri": client.jwks_uri,
    }


async def create_client(
    services: Services,
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
) -> dict[str, Any]:
    """`jwks` (JWKS JSON text) or `jwks_uri` (where the client publishes it): the public keys a
    private_key_jwt client signs its assertions with; that method needs one of them. Every URI
    is checked here, the one place all registrations pass (oauth/client_uris.py says how)."""
    if await services.stores.clients.get(client_id) is not None:
        raise AdminError(f"client {client_id!r} exists already")
    if jwks is not None and jwks_uri is not None:
        raise AdminError("give the client's keys (--jwks) or where to fetch them (--jwks-uri)")
    method = _auth_method(auth_method, public=public, keys=jwks is not None or jwks_uri is not None)
    key_set = public_key_set(jwks) if jwks is not None else None
    redirects, after_logout = _checked_uris(redirect_uris, post_logout_redirect_uris, jwks_uri)
    unknown = [grant for grant in grant_types if grant not in GRANT_TYPES]
    if unknown or not grant_types:
        raise AdminError(f"grant types must be among {', '.join(GRANT_TYPES)}")
    if token_format not in ("jwt", "opaque"):
        raise AdminError("token format must be jwt or opaque")
    if method in ("client_secret_basic", "client_secret_post"):
        secret = secret or SecretHasher.generate()
        if len(secret) < 32:
            raise AdminError("client secrets need at least 32 characters (256 bits recommended)")
    client = ClientRecord(
        client_id=client_id,
        auth_method=method,
        grant_types=tuple(grant_types),
        scopes=frozenset(scope.split()),
        created_at=services.clock(),
        secret_digest=services.hasher.digest(secret) if secret else None,
        redirect_uris=redirects,
        post_logout_redirect_uris=after_logout,
        audience=tuple(audience or ()),
        token_format=token_format,
        skip_consent=skip_consent,
        jwks=key_set,
        jwks_uri=jwks_uri,
    )
    await services.stores.clients.put(client)
    view = client_view(client)
    if key_set is not None:
        view["jwks_kids"] = [key.get("kid") for key in json.loads(key_set)["keys"]]
    if secret and method != "none":
        view["client_secret"] = secret  # shown once; only its digest is stored
    return view


def _auth_method(requested: str | None, *, public: bool, keys: bool) -> str:
    default = "private_key_jwt" if keys else "none" if public else "client_secret_basic"
    method = requested or default
    if method not in METHODS:
        raise AdminError(f"auth method must be one of {', '.join(METHODS)}")
    if (method == "private_key_jwt") != keys:
        raise AdminError(
            "private_key_jwt clients need their public keys (--jwks or --jwks-uri), and only they"
        )
    if public != (method == "none"):
        raise AdminError("public clients use auth method none, and only they do")
    return method


def _checked_uris(
    redirects: list[str], after_logout: list[str] | None, jwks_uri: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The redirect and post-logout redirect URIs, checked (duplicates dropped); the jwks_uri
    checked too."""
    if jwks_uri is not None:
        check_jwks_uri(jwks_uri)
    try:
        return (
            client_uris.redirect_uris(redirects),
            client_uris.redirect_uris(after_logout or [], "post-logout redirect URI"),
        )
    except client_uris.UriError as exc:
        raise AdminError(str(exc)) from None


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


async def set_client_disabled(services: Services, client_id: str, disabled: bool) -> dict[str, Any]:
    client = await services.stores.clients.get(client_id)
    if client is None:
        raise AdminError(f"no client {client_id!r}")
    await services.stores.clients.put(replace(client, disabled=disabled))
    if disabled:
        await revoke(services, client=client_id)
    return client_view(replace(client, disabled=disabled))


async def create_user(services: Services, username: str, password: str) -> dict[str, Any]:
    check_password(password)
    now = services.clock()
    user = UserRecord(str(uuid.uuid4()), username, PASSWORDS.hash(password), now, now)
    try:
        await services.stores.users.put(user)
    except Conflict:
        raise AdminError(f"username {username!r} is taken") from None
    return {"user_id": user.user_id, "username": user.username}


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


async def set_password(services: Services, username: str, password: str) -> dict[str, Any]:
    check_password(password)
    user = await services.stores.users.by_username(username)
    if user is None:
        raise AdminError(f"no user {username!r}")
    now = services.clock()
    await services.stores.users.put(
        replace(user, password_hash=PASSWORDS.hash(password), password_changed_at=now)
    )
    await revoke(services, subject=user.user_id)  # a password change ends every existing token
    return {"user_id": user.user_id, "username": username, "tokens_revoked_before": now}


def check_password(password: str) -> None:
    if not 8 <= len(password) <= 1024:
        raise AdminError("passwords need 8 to 1024 characters")


async def revoke(
    services: Services,
    *,
    jti: str | None = None,
    subject: str | None = None,
    session: str | None = None,
    client: str | None = None,
) -> dict[str, Any]:
    """Watermarks revoke every token issued up to now; they are forgotten once those expired."""
    now = services.clock()
    forget_after = now + services.keys.keyring.policy.max_token_lifetime + services.settings.leeway
    forget_after = max(forget_after, now + services.settings.refresh_token_lifetime)
    targets = [
        (RevocationKind.SUBJECT, subject),
        (RevocationKind.SESSION, session),
        (RevocationKind.CLIENT, client),
    ]
    done: list[dict[str, Any]] = []
    if jti is not None:
        seq = await services.revocations.revoke(
            Revocation(RevocationKind.JTI, jti, None, forget_after)
        )
        done.append({"kind": "jti", "value": jti, "seq": seq})
    for kind, value in targets:
        if value is not None:
            seq = await services.revocations.revoke(Revocation(kind, value, now, forget_after))
            done.append({"kind": kind, "value": value, "issued_before": now, "seq": seq})
    if not done:
        raise AdminError("say what to revoke: --token, --subject, --session or --client")
    return {"revoked": done, "at": iso_time(now)}


async def rotate_client_secret(services: Services, client_id: str) -> dict[str, Any]:
    client = await services.stores.clients.get(client_id)
    if client is None or client.auth_method not in ("client_secret_basic", "client_secret_post"):
        raise AdminError(f"no confidential client {client_id!r} with a secret")
    secret = SecretHasher.generate()
    await services.stores.clients.put(replace(client, secret_digest=services.hasher.digest(secret)))
    return {**client_view(client), "client_secret": secret}


# --- users and sessions for the admin console and API (issue 8) --------------------------------
ADMIN_ROLE = "tokenward:admin"


def is_admin(user: UserRecord) -> bool:
    """An admin is a user whose stored claims list the role `tokenward:admin` under `roles`."""
    try:
        roles = json.loads(user.claims or "{}").get("roles", [])
    except (ValueError, AttributeError):
        return False
    return isinstance(roles, list) and ADMIN_ROLE in roles


async def set_admin(services: Services, username: str, admin: bool) -> dict[str, Any]:
    user = await services.stores.users.by_username(username)
    if user is None:
        raise AdminError(f"no user {username!r}")
    claims = json.loads(user.claims or "{}")
    roles = [role for role in claims.get("roles", []) if role != ADMIN_ROLE]
    claims["roles"] = [*roles, ADMIN_ROLE] if admin else roles
    await services.stores.users.put(replace(user, claims=json.dumps(claims)))
    return {"user_id": user.user_id, "username": username, "admin": admin}


async def end_session(services: Services, session_id: str) -> dict[str, Any]:
    """End a browser session and revoke every token issued under it (the `sid` watermark)."""
    if await services.sessions.end(session_id) is None:
        raise AdminError(f"no session {session_id!r}")
    return await revoke(services, session=session_id)


async def force_logout(services: Services, user_id: str) -> dict[str, Any]:
    """End every session of the user and revoke every token issued to them so far."""
    if await services.stores.users.get(user_id) is None:
        raise AdminError(f"no user {user_id!r}")
    for session in await services.stores.sessions.for_user(user_id):
        if session.ended_at is None:
            await services.sessions.end(session.session_id)
    return await revoke(services, subject=user_id)


async def set_user_disabled(services: Services, user_id: str, disabled: bool) -> dict[str, Any]:
    user = await services.stores.users.get(user_id)
    if user is None:
        raise AdminError(f"no user {user_id!r}")
    await services.stores.users.put(replace(user, disabled=disabled))
    if disabled:
        await force_logout(services, user_id)
    return {"user_id": user_id, "username": user.username, "disabled": disabled}
