"""`trust.mode: local`: the gateway reads the issuer's keyring and revocation log itself.

Local mode builds the authorization server's services from the `TOKENWARD_*` settings, but is
not a server: nothing else runs their background work. `LocalTrust` is that work, handed to the
gateway's lifespan: the revocation feed (bootstrap, then the log and Redis followed, so a
revocation written by `tokenward serve` or `tokenward revoke` on the same database reaches this
gateway) and the keyring reloads (so a key rotated there is trusted here), and at shutdown it
closes the stores it opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from tokenward.config import Settings
from tokenward.core.lifecycle import cancel_and_wait
from tokenward.deploy.wiring import Services, StoreSet, build_services, open_stores
from tokenward.gateway.model import GatewayConfig
from tokenward.gateway.startup import StartupError
from tokenward.gateway.trust import TrustError, TrustSetup, build_validator
from tokenward.guard import KeyringKeySource
from tokenward.store.errors import STORAGE_ERRORS
from tokenward.tokens.errors import MasterKeyError
from tokenward.tokens.opaque import StoreOpaqueResolver

log = structlog.get_logger(__name__)
# As often as the servers' key schedule (server/key_schedule.py KEY_SCHEDULE_SECONDS): a rotation is
# published `max(1 h, 2 x JWKS max-age)` before it signs, so a minute is early enough; an
# unknown kid reloads at once besides (tokens.key_sources.KeyringKeySource).
KEY_RELOAD_SECONDS = 60.0
SQLITE = "sqlite+aiosqlite:///"
DATABASE_FIX = (
    "set TOKENWARD_DATABASE_URL to postgresql+asyncpg://user@host:5432/db (the servers' "
    "database, running) or leave it unset for the SQLite file under the data directory"
)


class LocalTrust:
    """The background work local trust depends on, for the gateway's `background`."""

    def __init__(self, services: Services, *, key_interval: float = KEY_RELOAD_SECONDS) -> None:
        self._services = services
        self._key_interval = key_interval
        self._keys_task: asyncio.Task[None] | None = None
        # Until the feed's first sync the mirror vouches for nothing: a request before start()
        # fails closed rather than pass on an empty denylist.
        services.validator.revocations.fresh_until = float("-inf")

    async def start(self) -> None:
        try:
            await self._services.revocations.start()
        except Exception as exc:
            await self._services.stores.aclose()
            raise StartupError(
                "TOKENWARD_DATABASE_URL",
                f"cannot read the revocation log ({type(exc).__name__})",
                DATABASE_FIX,
            ) from exc
        self._keys_task = asyncio.create_task(self._follow_keys())

    async def stop(self) -> None:
        if self._keys_task is not None:
            await cancel_and_wait(self._keys_task)
        await self._services.revocations.stop()
        await self._services.stores.aclose()

    async def _follow_keys(self) -> None:
        """Reload only: rotating and retiring keys is the servers' schedule, not a gateway's."""
        while True:
            await asyncio.sleep(self._key_interval)
            try:
                await self._services.keys.reload()
            except Exception as exc:  # noqa: BLE001 - the reloads must outlive a failing database
                log.warning("gateway_key_reload_failed", error=type(exc).__name__)


async def local_trust(config: GatewayConfig, settings: Callable[[], Settings]) -> TrustSetup:
    """Embedded mode: this process loads the issuer's keyring and revocations itself."""
    resolved = _settings(settings)
    if resolved.issuer != config.trust.issuer:
        raise TrustError(
            f"trust.issuer: {config.trust.issuer!r} is not this deployment's issuer "
            f"{resolved.issuer!r} (TOKENWARD_ISSUER); make them the same"
        )
    _require_sqlite_file(resolved)
    try:
        resolved.resolved_master_key()  # before the database is touched
        stores = await _open(resolved)
    except MasterKeyError as exc:
        raise _master_key_error(exc) from None
    try:
        services = await build_services(resolved, stores)
    except MasterKeyError as exc:  # the key is well formed but does not open the keyring
        await stores.aclose()
        raise _master_key_error(exc) from None
    except (*STORAGE_ERRORS, SQLAlchemyError, OSError) as exc:
        await stores.aclose()
        raise StartupError(
            "TOKENWARD_DATABASE_URL",
            f"cannot read the signing keys ({type(exc).__name__})",
            DATABASE_FIX,
        ) from None
    setup = embedded_trust(services, config)
    setup.background.append(LocalTrust(services))
    if stores.redis is not None:
        setup.redis.append(stores.redis)
    return setup


def embedded_trust(services: Services, config: GatewayConfig) -> TrustSetup:
    """Trust the keyring and revocation mirror of an authorization server in this process
    (for mounting the gateway beside `tokenward serve`): the same mirror object, so a
    revocation the server applies is refused here at once. The server's lifespan runs its
    feed; `local_trust` adds one for a gateway that is not beside a server."""
    own = services.validator
    keys = KeyringKeySource(services.keys, services.keys.reload)
    opaque = StoreOpaqueResolver(services.stores.access_tokens)
    validator = build_validator(
        config,
        keys,
        own.revocations,
        opaque,
        services.clock,
        first_use=services.stores.replay.first_use,
    )
    return TrustSetup(validator, None)


def _master_key_error(exc: MasterKeyError) -> StartupError:
    return StartupError(
        "TOKENWARD_MASTER_KEY", str(exc), "give this gateway the servers' master key"
    )


def _settings(settings: Callable[[], Settings]) -> Settings:
    try:
        resolved = settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "TOKENWARD_" + str(error["loc"][0]).upper() if error["loc"] else "TOKENWARD_*"
        raise StartupError(name, str(error["msg"]), f"correct {name}") from None
    if resolved.redis_url and urlsplit(resolved.redis_url).scheme not in (
        "redis",
        "rediss",
        "unix",
    ):
        raise StartupError(
            "TOKENWARD_REDIS_URL",
            "is not a Redis URL",
            "give redis://host:6379/0 (or rediss://, unix://), or leave it unset",
        )
    return resolved


def _require_sqlite_file(settings: Settings) -> None:
    """Not created here: a missing file is a wrong data directory, and creating it would
    start a new deployment beside the servers' one."""
    url = settings.resolved_database_url
    if url.startswith(SQLITE) and not Path(url[len(SQLITE) :]).is_file():
        raise StartupError(
            "TOKENWARD_DATA_DIR",
            f"no tokenward database at {url[len(SQLITE) :]}",
            "give the gateway the servers' data directory (tokenward --data-dir D gateway ...) "
            "or their TOKENWARD_DATABASE_URL",
        )


async def _open(settings: Settings) -> StoreSet:
    """The servers' stores. A gateway reads a deployment, it never starts one: a database
    without signing keys is a wrong URL or schema, and would otherwise get a new keyring that
    no server signs with (every token 401)."""
    try:
        stores = await open_stores(settings)
        keys = await stores.keys.load_all()
    except (ValueError, ImportError, SQLAlchemyError, OSError, *STORAGE_ERRORS) as exc:
        # The type only: a driver's message may hold the URL with its password.
        raise StartupError(
            "TOKENWARD_DATABASE_URL",
            f"cannot open the database ({type(exc).__name__})",
            DATABASE_FIX,
        ) from None
    if not keys:
        await stores.aclose()
        raise StartupError(
            "TOKENWARD_DATABASE_URL",
            "the database holds no signing keys",
            "point the gateway at the servers' database (and TOKENWARD_DATABASE_SCHEMA), "
            "or run `tokenward init` there first",
        )
    return stores
