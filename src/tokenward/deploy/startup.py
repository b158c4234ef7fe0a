"""Starting up: settings, database, Redis, master key and listening socket, each checked in turn,
so that a deployment problem becomes one line naming the setting and the fix (StartupError),
never a traceback. The CLI prints the line and exits 2. No message carries a secret: URLs are
shown without their passwords, and driver messages only by their first line.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from alembic.util import CommandError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tokenward.config import ENV_FILE, Settings, load_settings
from tokenward.datadir import DataDirError, secure_dir, secure_sqlite
from tokenward.deploy.wiring import Services, StoreSet, build_services, open_stores
from tokenward.monitor.config import MonitorSettings
from tokenward.serving import workers
from tokenward.store.revocation_feed import Siblings
from tokenward.store.sql import create_engine
from tokenward.tokens.errors import MasterKeyError
from tokenward.tokens.sealing import KeySealer

SETTINGS_DOC = "docs/configuration.md"
MASTER_KEY_FORMAT = (
    "a master key is 32 random bytes in base64url without padding (43 characters); "
    "`tokenward init` writes one to <data_dir>/master.key"
)


class StartupError(Exception):
    """tokenward cannot start as configured; the message is one line saying what to change."""


def settings(**flags: Any) -> Settings:
    """`config.load_settings`, its failures as StartupError."""
    try:
        return load_settings(**flags)
    except ValidationError as exc:
        raise StartupError(validation_line(exc)) from None
    except OSError as exc:  # tokenward.env present but unreadable
        raise StartupError(f"cannot read {exc.filename or ENV_FILE}: {_reason(exc)}") from None


def monitor_settings(settings: Settings) -> MonitorSettings:
    """TOKENWARD_MONITOR_* from the environment, else the same tokenward.env as `settings`."""
    try:
        return MonitorSettings(_env_file=settings.data_dir / ENV_FILE)
    except ValidationError as exc:
        raise StartupError(validation_line(exc, prefix="TOKENWARD_MONITOR_")) from None


def validation_line(error: ValidationError, prefix: str = "TOKENWARD_") -> str:
    """`TOKENWARD_<FIELD>: what is wrong` per invalid field. Never the value: it may be secret."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        # Nested fields (the monitor's detectors) are set as SECTION__FIELD.
        field = "__".join(str(part) for part in item["loc"] if isinstance(part, str)) or "?"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{prefix}{field.upper()}: {message}")
    return "; ".join(problems) + f" ({SETTINGS_DOC} lists every setting)"


async def open_services(
    settings: Settings, *, create_schema: bool = False, siblings: Siblings | None = None
) -> Services:
    """Stores (migrated) and services, or StartupError. `create_schema`: create a missing
    PostgreSQL schema (`tokenward init`) instead of refusing. `siblings`: the other workers
    of `serve --workers N`, told of each revocation (without Redis)."""
    if settings.resolved_database_url.startswith("sqlite"):
        check_data_dir(settings.data_dir)  # first: the master key file is usually in it too
    _check_master_key(settings)
    monitor = monitor_settings(settings)
    await check_database(settings, create_schema=create_schema)
    try:
        stores = await open_stores(settings)
    except DataDirError as exc:  # a database file that cannot be made owner-only
        raise StartupError(f"{exc} (fix its owner or permissions)") from None
    except (SQLAlchemyError, CommandError, OSError) as exc:
        raise StartupError(
            f"migrating the database at {safe_url(settings.resolved_database_url)} failed: "
            f"{_reason(exc)} (TOKENWARD_DATABASE_URL)"
        ) from None
    try:
        await _check_redis(stores, settings)
        try:
            return await build_services(
                settings, stores, monitor_settings=monitor, siblings=siblings
            )
        except MasterKeyError as exc:
            raise StartupError(f"{_master_key_source(settings)}: {exc}") from None
        except DataDirError as exc:  # the security audit file cannot be opened 0600
            raise StartupError(f"TOKENWARD_MONITOR_AUDIT_LOG: {exc}") from None
        except (SQLAlchemyError, OSError) as exc:
            raise StartupError(_unreachable(settings, exc)) from None
    except BaseException:
        await stores.aclose()
        raise


def _check_master_key(settings: Settings) -> None:
    """Read and check the master key before anything else needs it."""
    try:
        key = settings.resolved_master_key()
    except MasterKeyError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(
            f"cannot read the master key file {exc.filename}: {_reason(exc)} "
            "(TOKENWARD_MASTER_KEY_FILE, or TOKENWARD_MASTER_KEY instead)"
        ) from None
    try:
        KeySealer(key)
    except MasterKeyError as exc:
        raise StartupError(f"{_master_key_source(settings)}: {exc}; {MASTER_KEY_FORMAT}") from None


def _master_key_source(settings: Settings) -> str:
    if settings.master_key is not None:
        return "TOKENWARD_MASTER_KEY"
    return f"master key file {settings.master_key_file or settings.data_dir / 'master.key'}"


async def check_database(settings: Settings, *, create_schema: bool = False) -> None:
    """The data directory is usable, the database answers, and its schema exists."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        check_data_dir(settings.data_dir)
        try:
            # Before SQLite first opens it: files an older version left open are tightened
            # while they are still there (-wal and -shm go when the last connection closes).
            secure_sqlite(url)
        except DataDirError as exc:
            raise StartupError(f"{exc} (fix its owner or permissions)") from None
    try:
        engine = create_engine(url, schema=settings.database_schema)
    except (ValueError, ArgumentError) as exc:
        sqlite_schema = settings.database_schema is not None and url.startswith("sqlite")
        setting = "TOKENWARD_DATABASE_SCHEMA" if sqlite_schema else "TOKENWARD_DATABASE_URL"
        raise StartupError(f"{setting}: {_reason(exc)}") from None
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
            schema = settings.database_schema
            if schema is None or connection.dialect.name != "postgresql":
                return
            found = await connection.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
            )
            if found.first() is not None:
                return
            if not create_schema:
                raise StartupError(
                    f"TOKENWARD_DATABASE_SCHEMA: the PostgreSQL schema {schema!r} does not exist "
                    f"in {safe_url(url)}; create it with `tokenward init` "
                    f'(or CREATE SCHEMA "{schema}")'
                )
            quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
            await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(_unreachable(settings, exc)) from None
    finally:
        await engine.dispose()


def check_data_dir(data_dir: Path) -> None:
    try:
        secure_dir(data_dir)  # 0700 when new; a warning when others may enter it
    except DataDirError as exc:
        raise StartupError(
            f"the data directory: {exc} (choose another with --data-dir or TOKENWARD_DATA_DIR)"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StartupError(
            f"the data directory {data_dir} is not writable by this user: fix its permissions "
            "or choose another with --data-dir or TOKENWARD_DATA_DIR"
        )


async def _check_redis(stores: StoreSet, settings: Settings) -> None:
    if stores.redis is None or settings.redis_url is None:
        return
    try:
        await stores.redis.ping()
    except (RedisError, OSError) as exc:
        raise StartupError(
            f"cannot reach Redis at {safe_url(settings.redis_url)}: {_reason(exc)} "
            "(start it, or fix TOKENWARD_REDIS_URL)"
        ) from None


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The server's listening socket, bound here so that a busy port is one clear line.
    `reuse_port`: one of `--workers N` sockets on the port (the kernel spreads connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        hint = "choose another with --port" if port else "check --host"
        raise StartupError(f"cannot listen on {host}:{port}: {_reason(exc)} ({hint})") from None
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The port held by the supervisor of `--workers N` (serving/workers.py), or one line."""
    try:
        return workers.reserve(host.strip("[]"), port)
    except OSError as exc:
        hint = "choose another with --port" if port else "check --host"
        raise StartupError(f"cannot listen on {host}:{port}: {_reason(exc)} ({hint})") from None


def _unreachable(settings: Settings, exc: BaseException) -> str:
    return (
        f"cannot use the database at {safe_url(settings.resolved_database_url)}: "
        f"{_reason(exc)} (check TOKENWARD_DATABASE_URL and that the server is running)"
    )


def safe_url(url: str) -> str:
    """A database or Redis URL without its password."""
    with contextlib.suppress(ArgumentError, ValueError):
        if "+" in url.split(":", 1)[0]:  # SQLAlchemy URLs: dialect+driver://
            return make_url(url).render_as_string(hide_password=True)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _reason(exc: BaseException) -> str:
    """The innermost cause's first line, short: enough to act on, no SQL, no traceback."""
    inner: BaseException = exc
    while True:
        nested = getattr(inner, "orig", None) or inner.__cause__
        if not isinstance(nested, BaseException) or nested is inner:
            break
        inner = nested
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    lines = str(inner).strip().splitlines()
    first = lines[0] if lines else type(inner).__name__
    return first[:200]
