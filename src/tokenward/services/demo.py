"""`make run`: the demo's accounts, and the banner that says how to use them.

Every start gives the demo client a new secret and the admin a new password, printed once and
stored only as a digest or an argon2id hash, so the printed commands always work as pasted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2.exceptions import VerificationError

from tokenward.services.clients import ClientAdmin
from tokenward.services.passwords import PASSWORDS
from tokenward.services.users import UserAdmin

DEMO_CLIENT = "demo-client"  # client credentials, for the first curl
DEMO_CLI = "demo-cli"  # public, device flow: `tokenward login` as the demo user
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
DEMO_ADMIN = "admin"
_JSON_TOKEN = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])'"


@dataclass(frozen=True)
class DemoLogins:
    client_secret: str
    admin_password: str


class DemoAccounts:
    def __init__(self, clients: ClientAdmin, users: UserAdmin) -> None:
        self._clients = clients
        self._users = users

    async def prepare(self) -> DemoLogins:
        """Create what is missing; give the client a new secret and the admin a new password."""
        clients = self._clients
        if await clients.get(DEMO_CLIENT) is None:
            await clients.create_client(
                DEMO_CLIENT,
                grant_types=["client_credentials"],
                scope="read write",
                redirect_uris=[],
            )
        secret = str((await clients.rotate_client_secret(DEMO_CLIENT))["client_secret"])
        if await clients.get(DEMO_CLI) is None:
            await clients.create_client(
                DEMO_CLI,
                grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                scope="openid profile read offline_access",
                redirect_uris=[],
                public=True,
            )
        await self._ensure_password(DEMO_USER, DEMO_PASSWORD)
        admin_password = secrets.token_urlsafe(12)
        await self._ensure_password(DEMO_ADMIN, admin_password)
        await self._users.set_admin(DEMO_ADMIN, True)
        return DemoLogins(secret, admin_password)

    async def _ensure_password(self, username: str, password: str) -> None:
        user = await self._users.by_username(username)
        if user is None:
            await self._users.create_user(username, password)
            return
        await self._users.enable(user)
        try:
            PASSWORDS.verify(user.password_hash, password)
        except VerificationError:
            await self._users.set_password(username, password)


def banner(issuer: str, logins: DemoLogins, *, program: str, data_dir: str) -> str:
    base = issuer.rstrip("/")
    fetch = (
        f"curl -s -u {DEMO_CLIENT}:{logins.client_secret} -d grant_type=client_credentials "
        f"{base}/token | {_JSON_TOKEN}"
    )
    call = f'curl -s -H "Authorization: Bearer $({fetch})" {base}/api/hello'
    return "\n".join(
        [
            "",
            f"tokenward demo at {base} (data in {data_dir})",
            "",
            f"  Admin console   {base}/admin   sign in as {DEMO_ADMIN} / {logins.admin_password}",
            f"  Demo user       {DEMO_USER} / {DEMO_PASSWORD}   sign in from a terminal with:",
            f"                  {program} login --issuer {base} --client-id {DEMO_CLI}",
            f"  Demo client     {DEMO_CLIENT} / {logins.client_secret}   (client credentials)",
            "",
            "Get a token and call the demo API with it (paste into a shell):",
            "",
            f"  {call}",
            "",
            "The client secret and the admin password are new on every start; only a hash of each",
            "is stored.",
            f"Discovery: {base}/.well-known/openid-configuration   API docs: {base}/docs",
            "",
        ]
    )
