"""Every state-changing admin action by name, as the console and the admin API run them, each
one audited whether it worked or not."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from tokenward.core.ports import ConsentStore
from tokenward.monitor.alerts import without_secrets
from tokenward.monitor.pipeline import Monitor
from tokenward.monitor.responder import ResponseError
from tokenward.oauth.mtls import SUBJECT_FIELDS
from tokenward.services.clients import ClientAdmin
from tokenward.services.errors import AdminError
from tokenward.services.factors import FactorCatalogue
from tokenward.services.initial_tokens import InitialTokenAdmin
from tokenward.services.revoking import Watermarks
from tokenward.services.users import UserAdmin
from tokenward.tokens.key_manager import KeyManager
from tokenward.tokens.keyring import KeyRotationError

log = structlog.get_logger(__name__)
Params = dict[str, Any]
Action = Callable[[Params, str], Awaitable[dict[str, Any]]]


class ActionError(ValueError):
    """An action the admin must correct; the message says how."""


class AdminActions:
    def __init__(
        self,
        clients: ClientAdmin,
        users: UserAdmin,
        watermarks: Watermarks,
        consents: ConsentStore,
        keys: KeyManager,
        monitor: Monitor,
        initial_tokens: InitialTokenAdmin,
        factors: FactorCatalogue,
    ) -> None:
        self._clients = clients
        self._users = users
        self._watermarks = watermarks
        self._consents = consents
        self._keys = keys
        self._monitor = monitor
        self._factors = factors
        self._actions: dict[str, Action] = {
            "client.create": self._create_client,
            "client.disable": lambda p, _a: clients.set_client_disabled(str(p["client_id"]), True),
            "client.enable": lambda p, _a: clients.set_client_disabled(str(p["client_id"]), False),
            "client.approve": lambda p, _a: clients.set_client_approval(str(p["client_id"]), True),
            "client.reject": lambda p, _a: clients.set_client_approval(str(p["client_id"]), False),
            "client.rotate_secret": lambda p, _a: clients.rotate_client_secret(str(p["client_id"])),
            "client.set_keys": lambda p, _a: clients.set_client_keys(
                str(p["client_id"]),
                jwks=_jwks_text(p.get("jwks")),
                jwks_uri=_text(p.get("jwks_uri")),
            ),
            "user.disable": lambda p, _a: users.set_user_disabled(str(p["user_id"]), True),
            "user.enable": lambda p, _a: users.set_user_disabled(str(p["user_id"]), False),
            "user.logout": lambda p, _a: users.force_logout(str(p["user_id"])),
            "user.reset_factors": self._reset_factors,
            "client.set_min_acr": lambda p, _a: clients.set_min_acr(
                str(p["client_id"]), _text(p.get("min_acr"))
            ),
            "session.revoke": lambda p, _a: users.end_session(str(p["session_id"])),
            "grant.revoke": self._revoke_grant,
            "key.rotate": self._rotate_keys,
            "token.revoke": lambda p, _a: watermarks.revoke(
                jti=p.get("jti"),
                subject=p.get("subject"),
                session=p.get("session"),
                client=p.get("client"),
            ),
            "alert.respond": self._respond,
            "ip.block": self._block,
            "ip.unblock": self._unblock,
            "registration_token.create": lambda p, _a: initial_tokens.create(
                float(p.get("ttl") or 86400), int(p["max_uses"]) if p.get("max_uses") else None
            ),
            "registration_token.revoke": lambda p, _a: initial_tokens.revoke(str(p["token_id"])),
        }

    async def perform(self, actor: str, via: str, action: str, params: Params) -> dict[str, Any]:
        """Run one admin action and audit it, whether it worked or not. Raises ActionError."""
        audit = self._monitor.audit
        details = {k: v for k, v in params.items() if k not in ("password", "client_secret")}
        try:
            result = await self._actions[action](params, actor)
        except (AdminError, ActionError, ResponseError, KeyError, ValueError) as exc:
            message = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            if audit is not None:
                audit.admin_action(actor, action, via, params=details, error=message)
            raise ActionError(message) from None
        if audit is not None:
            audit.admin_action(actor, action, via, params=details, result=without_secrets(result))
        else:
            log.info("admin_action", actor=actor, action=action, via=via, params=details)
        return result

    async def _create_client(self, p: Params, _actor: str) -> dict[str, Any]:
        return await self._clients.create_client(
            str(p.get("client_id") or "").strip(),
            grant_types=list(p.get("grant_types") or []),
            scope=str(p.get("scope") or ""),
            redirect_uris=list(p.get("redirect_uris") or []),
            post_logout_redirect_uris=list(p.get("post_logout_redirect_uris") or []),
            public=bool(p.get("public")),
            token_format=str(p.get("token_format") or "jwt"),
            exchange_audiences=[str(item) for item in p.get("exchange_audiences") or []],
            exchange_impersonation=bool(p.get("exchange_impersonation")),
            access_token_alg=str(p["access_token_alg"]) if p.get("access_token_alg") else None,
            id_token_signed_response_alg=_text(p.get("id_token_signed_response_alg")),
            backchannel_logout_uri=_text(p.get("backchannel_logout_uri")),
            backchannel_logout_session_required=bool(p.get("backchannel_logout_uri")),
            auth_method=_text(p.get("auth_method")),
            jwks=_jwks_text(p.get("jwks")),
            jwks_uri=_text(p.get("jwks_uri")),
            require_par=bool(p.get("require_pushed_authorization_requests")),
            require_signed_request_object=bool(p.get("require_signed_request_object")),
            profile=str(p.get("profile") or "baseline"),
            min_acr=_text(p.get("min_acr")),
            tls_subject={
                name: value for name in SUBJECT_FIELDS if (value := _text(p.get(name))) is not None
            },
            tls_bound_tokens=_choice(p.get("tls_client_certificate_bound_access_tokens")),
        )

    async def _reset_factors(self, p: Params, _actor: str) -> dict[str, Any]:
        """A user who lost their authenticator: every second factor removed, so their next
        sign-in is by password and they set up new ones at /account. The lost device may be in
        someone else's hands, signed in: every session ends and every token issued so far is
        revoked, as a force logout does."""
        user_id = str(p["user_id"])
        if await self._users.get(user_id) is None:
            raise ActionError(f"no user {user_id!r}")
        removed = await self._factors.reset(user_id)
        revoked = await self._users.force_logout(user_id)
        return {"user_id": user_id, "factors_removed": removed, **revoked}

    async def _revoke_grant(self, p: Params, _actor: str) -> dict[str, Any]:
        user_id, client_id = str(p["user_id"]), str(p["client_id"])
        await self._consents.withdraw(user_id, client_id)
        # Refresh families cannot be listed per client yet: the subject watermark ends them all.
        result = await self._watermarks.revoke(subject=user_id)
        return {"user_id": user_id, "client_id": client_id, "consent_withdrawn": True, **result}

    async def _rotate_keys(self, _p: Params, _actor: str) -> dict[str, Any]:
        try:
            changed = await self._keys.rotate()
        except KeyRotationError as exc:
            raise ActionError(str(exc)) from None
        return {"changed": [{"kid": key.kid, "state": key.state.value} for key in changed]}

    async def _respond(self, p: Params, actor: str) -> dict[str, Any]:
        try:
            alert = await self._monitor.respond(str(p["alert_id"]), str(p["action"]), actor)
        except KeyError:
            raise ActionError("no such alert (it may have aged out)") from None
        return alert.as_dict()

    async def _block(self, p: Params, actor: str) -> dict[str, Any]:
        seconds = float(p.get("seconds") or 3600)
        if not 1 <= seconds <= 30 * 86400:
            raise ActionError("block for 1 second to 30 days")
        entry = self._monitor.blocklist.block(str(p["ip"]), seconds, "admin", actor)
        return {"ip": entry.ip, "until": entry.until}

    async def _unblock(self, p: Params, _actor: str) -> dict[str, Any]:
        return {"ip": p["ip"], "unblocked": self._monitor.blocklist.unblock(str(p["ip"]))}


def _text(value: object) -> str | None:
    """A form or JSON field: blank or absent is None."""
    return str(value).strip() or None if value is not None else None


def _choice(value: object) -> bool | None:
    """A yes/no field that may be left to its default: the API's true, false or null, the
    console's select ("", "true", "false"). Anything else is refused, never guessed at."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "default"):
        return None
    if text in ("true", "false"):
        return text == "true"
    raise ActionError(f"expected true, false or nothing, not {str(value)[:20]!r}")


def _jwks_text(value: object) -> str | None:
    """The JWKS as JSON text: the API sends an object, the console's form its text."""
    if isinstance(value, dict):
        return json.dumps(value)
    return _text(value)
