"""The developer portal's apps (docs/portal.md): a signed-in user registers clients of their
own, an operator approves them, and the user reveals each secret once and rotates it.

A registration goes through dynamic client registration's checks (`ClientRegistration
.build_owned`: redirect URIs, grant and response types, sizes) and is stored with its owner
(the user's id) in status pending, without a secret: a pending or rejected client fails every
client authentication (`ClientRecord.active`). After approval the owner reveals the secret
once (it is made then, only its keyed digest kept); a rotation makes a new one and the old
stops working. Another user's app is reported exactly like a missing one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tokenward.core.ports import ClientStore
from tokenward.core.records import APPROVED, PENDING, ClientRecord
from tokenward.monitor.pipeline import Monitor
from tokenward.oauth.client_auth import SecretHasher
from tokenward.oauth.errors import OAuthError
from tokenward.services.catalogue import Catalogue
from tokenward.services.clients import SECRET_METHODS
from tokenward.services.registration import ClientRegistration

CLIENT_CREDENTIALS = "client_credentials"
AUTHORIZATION_CODE = "authorization_code"
KINDS = {  # what the registration form offers: a service, or a web app signing users in
    "service": (CLIENT_CREDENTIALS,),
    "web": (AUTHORIZATION_CODE, "refresh_token"),
}
MAX_NAME = 100
MAX_REDIRECT_URIS = 5
MAX_URI = 2048


class PortalError(ValueError):
    """What the developer must correct, or may not do; the message says which."""


@dataclass(frozen=True, slots=True)
class PortalSettings:
    max_apps: int  # per developer, every status counted


class DeveloperApps:
    def __init__(
        self,
        *,
        settings: PortalSettings,
        catalogue: Catalogue,
        clients: ClientStore,
        registration: ClientRegistration,
        hasher: SecretHasher,
        monitor: Monitor,
        clock: Callable[[], float],
    ) -> None:
        """`monitor`: its usage window charts each app, its audit log records each change."""
        self.settings = settings
        self.catalogue = catalogue
        self._clients = clients
        self._registration = registration
        self._hasher = hasher
        self._monitor = monitor
        self._clock = clock

    async def of(self, owner: str) -> Sequence[ClientRecord]:
        return [client for client in await self._clients.list_all() if client.owner == owner]

    async def get(self, owner: str, client_id: str) -> ClientRecord | None:
        """The owner's app; None for a missing one and for another user's alike."""
        client = await self._clients.get(client_id[:128])
        return client if client is not None and client.owner == owner else None

    async def register(
        self, owner: str, *, name: str, kind: str, apis: Sequence[str], redirect_uris: Sequence[str]
    ) -> ClientRecord:
        """A new app of `owner`, pending approval. `apis`: catalogue names; the app may ask
        for their scopes, and its tokens are for their audiences."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise PortalError(f"Give the app a name of at most {MAX_NAME} characters.")
        grant_types = KINDS.get(kind)
        if grant_types is None:
            raise PortalError("Choose the kind of app: a service or a web app.")
        chosen = [self.catalogue.named(api) for api in dict.fromkeys(apis)]
        if not chosen or any(api is None for api in chosen):
            raise PortalError("Choose one or more APIs of the catalogue.")
        uris = [uri.strip() for uri in redirect_uris if uri.strip()]
        if len(uris) > MAX_REDIRECT_URIS or any(len(uri) > MAX_URI for uri in uris):
            raise PortalError(f"At most {MAX_REDIRECT_URIS} redirect URIs, each of bounded size.")
        if len(await self.of(owner)) >= self.settings.max_apps:
            raise PortalError(f"You have {self.settings.max_apps} apps, the most allowed.")
        scopes = sorted({scope for api in chosen if api is not None for scope in api.scopes})
        audience = tuple(sorted({api.audience for api in chosen if api and api.audience}))
        metadata: dict[str, Any] = {
            "client_name": name,
            "grant_types": list(grant_types),
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": " ".join(scopes),
        }
        if AUTHORIZATION_CODE in grant_types:
            metadata["redirect_uris"] = uris
        elif uris:
            raise PortalError("A service signs no users in: leave the redirect URIs empty.")
        try:
            client = self._registration.build_owned(
                secrets.token_urlsafe(16),
                metadata,
                allowed_scopes=self.catalogue.scopes,
                created_at=self._clock(),
            )
        except OAuthError as exc:
            raise PortalError(exc.description) from None
        client = replace(client, owner=owner, approval=PENDING, audience=audience)
        await self._clients.put(client)
        self._audit(owner, "portal.register", client.client_id, scope=" ".join(scopes))
        return client

    async def reveal_secret(self, owner: str, client_id: str) -> str:
        """The approved app's first secret, shown this once (only its digest is kept)."""
        client = await self._approved(owner, client_id)
        if client.secret_digest is not None:
            raise PortalError("The secret was shown already; rotate it to get a new one.")
        self._audit(owner, "portal.reveal_secret", client_id)
        return await self._new_secret(client)

    async def rotate_secret(self, owner: str, client_id: str) -> str:
        """A new secret, shown once; the old one stops working now."""
        client = await self._approved(owner, client_id)
        if client.secret_digest is None:
            raise PortalError("Reveal the app's first secret instead.")
        self._audit(owner, "portal.rotate_secret", client_id)
        return await self._new_secret(client)

    def usage(self, client_id: str) -> list[dict[str, float]]:
        """Requests with the app's tokens over the monitor's window (this process's view)."""
        return self._monitor.stats.client_series(client_id, self._clock())

    def _audit(self, owner: str, action: str, client_id: str, **details: str) -> None:
        """In the audit log beside the operators' actions (never a secret)."""
        if self._monitor.audit is not None:
            self._monitor.audit.admin_action(
                f"user_id:{owner}", action, "portal", client_id=client_id, **details
            )

    async def _approved(self, owner: str, client_id: str) -> ClientRecord:
        client = await self.get(owner, client_id)
        if client is None:
            raise PortalError("There is no such app of yours.")
        if client.approval != APPROVED or client.disabled:
            raise PortalError("The app is not approved (or is disabled): it has no secret.")
        if client.auth_method not in SECRET_METHODS:
            raise PortalError("This app authenticates without a secret.")
        return client

    async def _new_secret(self, client: ClientRecord) -> str:
        secret = SecretHasher.generate()
        await self._clients.put(replace(client, secret_digest=self._hasher.digest(secret)))
        return secret
