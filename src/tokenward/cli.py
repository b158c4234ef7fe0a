"""`tokenward` command line: serve, and manage clients, users, keys and revocations. JSON out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn

from tokenward import client_cli
from tokenward.admin import (
    AdminError,
    client_view,
    create_client,
    create_user,
    revoke,
    rotate_client_secret,
    set_admin,
    set_client_disabled,
    set_password,
)
from tokenward.config import Settings
from tokenward.datadir import DataDirError, secure_dir
from tokenward.server.app import create_app
from tokenward.server.outer import uvicorn_log_config
from tokenward.tokens.errors import MasterKeyError
from tokenward.tokens.jws import parse_compact, payload_object
from tokenward.tokens.keyring import KeyRotationError
from tokenward.tokens.sealing import generate_master_key
from tokenward.wiring import Services, build_services, open_stores

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
client_app = typer.Typer(no_args_is_help=True, help="OAuth clients")
user_app = typer.Typer(no_args_is_help=True, help="End users")
keys_app = typer.Typer(no_args_is_help=True, help="Signing keys")
app.add_typer(client_app, name="client")
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")
app.command("login")(client_cli.login)
app.command("call")(client_cli.call)
app.add_typer(client_cli.token_app, name="token")

DEMO_CLIENT = "demo-client"
DEMO_USER = "demo"


class State:
    data_dir: Path = Path("var")
    issuer: str | None = None


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": State.data_dir}
    if State.issuer:
        values["issuer"] = State.issuer
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _run(action: Callable[[Any], Awaitable[T]], settings: Settings | None = None) -> T:
    """Open the stores and services, run one action, close. Clear errors, exit 1, no traces."""

    async def main() -> T:
        resolved = settings or _settings()
        stores = await open_stores(resolved)
        try:
            return await action(await build_services(resolved, stores))
        finally:
            await stores.aclose()

    try:
        return asyncio.run(main())
    except (AdminError, MasterKeyError, KeyRotationError, DataDirError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.callback()
def main_options(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the database and keys live")
    ] = Path("var"),
    issuer: Annotated[str | None, typer.Option("--issuer", help="Exact issuer URL")] = None,
) -> None:
    State.data_dir = data_dir
    State.issuer = issuer


@app.command()
def init() -> None:
    """Create the data directory, a master key file (0600) and the database, if absent."""
    settings = _settings()
    try:
        secure_dir(settings.data_dir)  # 0700 when new
    except DataDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    key_file = settings.master_key_file or settings.data_dir / "master.key"
    created = False
    if settings.master_key is None and not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_master_key() + "\n")
        created = True
    kids = _run(
        lambda services: _async([key.kid for key in services.keys.managed_keys()]), settings
    )
    _emit({"data_dir": str(settings.data_dir), "master_key_created": created, "keys": kids})


async def _async(value: T) -> T:
    return value


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Exact issuer URL")] = None,
) -> None:
    """Serve the authorization server."""
    _serve(_settings(issuer=issuer or State.issuer or f"http://{host}:{port}"), host, port)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
) -> None:
    """`make run`: init, a demo client and user if absent, print a first-token curl, serve."""
    init()
    settings = _settings(issuer=State.issuer or f"http://{host}:{port}")
    secret = _run(_ensure_demo, settings)
    base = settings.issuer.rstrip("/")
    typer.echo("\ntokenward is starting. Get a first token (client credentials):\n")
    if secret:
        typer.echo(
            f"  curl -s -u {DEMO_CLIENT}:{secret} -d grant_type=client_credentials {base}/token\n"
        )
        typer.echo("The demo client's secret is shown once; it is stored only as a digest.")
    else:
        typer.echo(
            f"  curl -s -u {DEMO_CLIENT}:<secret printed on the first run> "
            f"-d grant_type=client_credentials {base}/token\n"
        )
        typer.echo(
            f"(lost it? `tokenward --data-dir {settings.data_dir} "
            f"client rotate-secret {DEMO_CLIENT}`)"
        )
    typer.echo(
        f"Then call the demo API: curl -H 'Authorization: Bearer <access_token>' {base}/api/hello"
    )
    typer.echo(f"Discovery: {base}/.well-known/openid-configuration   API docs: {base}/docs\n")
    _serve(settings, host, port)


async def _ensure_demo(services: Any) -> str | None:

    secret = None
    if await services.stores.clients.get(DEMO_CLIENT) is None:
        created = await create_client(
            services,
            DEMO_CLIENT,
            grant_types=["client_credentials"],
            scope="read write",
            redirect_uris=[],
        )
        secret = created["client_secret"]
    if await services.stores.users.by_username(DEMO_USER) is None:
        await create_user(services, DEMO_USER, "demo-password")
    return secret


def _serve(settings: Settings, host: str, port: int) -> None:

    async def main() -> None:
        stores = await open_stores(settings)
        try:
            services = await build_services(settings, stores)
            if settings.redis_url:
                # What gateways put in `revocations.namespace` / `monitor.namespace` when they
                # cannot derive it (docs/gateway.md).
                typer.echo(f"redis_namespace={settings.redis_namespace}")
            config = uvicorn.Config(
                create_app(services),
                host=host,
                port=port,
                log_level="info",
                access_log=False,  # ours (server/outer.py) never prints a query
                log_config=uvicorn_log_config(),
                proxy_headers=False,
                server_header=False,
            )
            await uvicorn.Server(config).serve()
        finally:
            await stores.aclose()

    try:
        asyncio.run(main())
    except (MasterKeyError, DataDirError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


# --- clients -------------------------------------------------------------------------------
@client_app.command("create")
def client_create(
    client_id: Annotated[str, typer.Option("--client-id")],
    grant_type: Annotated[list[str], typer.Option("--grant-type", help="Repeatable")],
    scope: Annotated[str, typer.Option("--scope")] = "",
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Repeatable")
    ] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="Default: generated")] = None,
    public: Annotated[bool, typer.Option("--public")] = False,
    auth_method: Annotated[str | None, typer.Option("--auth-method")] = None,
    token_format: Annotated[str, typer.Option("--token-format")] = "jwt",
    skip_consent: Annotated[bool, typer.Option("--skip-consent")] = False,
    audience: Annotated[list[str] | None, typer.Option("--audience", help="Repeatable")] = None,
) -> None:
    """Register a client; prints its secret once."""

    _emit(
        _run(
            lambda s: create_client(
                s,
                client_id,
                grant_types=grant_type,
                scope=scope,
                redirect_uris=redirect_uri or [],
                secret=secret,
                public=public,
                auth_method=auth_method,
                token_format=token_format,
                skip_consent=skip_consent,
                audience=audience,
            )
        )
    )


@client_app.command("list")
def client_list() -> None:

    async def action(services: Any) -> list[dict[str, Any]]:
        return [client_view(c) for c in await services.stores.clients.list_all()]

    _emit(_run(action))


@client_app.command("disable")
def client_disable(client_id: str) -> None:
    """Disable a client and revoke every token it holds."""

    _emit(_run(lambda s: set_client_disabled(s, client_id, True)))


@client_app.command("rotate-secret")
def client_rotate_secret(client_id: str) -> None:
    """Give a confidential client a new generated secret (printed once)."""

    _emit(_run(lambda s: rotate_client_secret(s, client_id)))


# --- users ---------------------------------------------------------------------------------
def _password_from_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        typer.echo("error: no password on standard input", err=True)
        raise typer.Exit(1)
    return password


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option("--username")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = True,
) -> None:

    password = _password_from_stdin()
    _emit(_run(lambda s: create_user(s, username, password)))


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Option("--username")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = True,
) -> None:
    """Change a password; every token issued to the user before now is revoked."""

    password = _password_from_stdin()
    _emit(_run(lambda s: set_password(s, username, password)))


@user_app.command("admin")
def user_admin(
    username: Annotated[str, typer.Option("--username")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the admin role away")] = False,
) -> None:
    """Give a user the tokenward:admin role (the admin console and /admin/api)."""
    _emit(_run(lambda s: set_admin(s, username, not revoke)))


# --- keys ----------------------------------------------------------------------------------
@keys_app.command("list")
def keys_list() -> None:
    async def action(services: Any) -> list[dict[str, Any]]:
        return [
            {
                "kid": k.kid,
                "alg": k.alg.name,
                "state": k.state.value,
                "created_at": k.created_at,
                "activated_at": k.activated_at,
                "retiring_at": k.retiring_at,
                "retired_at": k.retired_at,
            }
            for k in services.keys.managed_keys()
            if k
        ]

    _emit(_run(action))


@keys_app.command("rotate")
def keys_rotate(
    force: Annotated[
        bool, typer.Option("--force", help="Rotate before the next key was published long enough")
    ] = False,
) -> None:
    async def action(services: Any) -> list[dict[str, str]]:
        return [
            {"kid": k.kid, "state": k.state.value} for k in await services.keys.rotate(force=force)
        ]

    _emit(_run(action))


# --- revocation ----------------------------------------------------------------------------
@app.command("revoke")
def revoke_command(
    token: Annotated[
        str | None, typer.Option("--token", help="A JWT access token (its jti is denied)")
    ] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="A sub claim value")] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="A username (its sub is looked up)")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="A sid")] = None,
    client: Annotated[str | None, typer.Option("--client", help="A client_id")] = None,
) -> None:
    """Revoke one token, or every token of a subject, session or client issued before now."""

    jti = None
    if token is not None:
        try:
            jti = payload_object(parse_compact(token)).get("jti")
        except ValueError:
            jti = None
        if not isinstance(jti, str):
            typer.echo("error: --token must be a JWT access token with a jti", err=True)
            raise typer.Exit(1)

    async def action(services: Services) -> dict[str, Any]:
        target = subject
        if user is not None:
            record = await services.stores.users.by_username(user)
            if record is None:
                raise AdminError(f"no user {user!r}")
            target = record.user_id
        return await revoke(services, jti=jti, subject=target, session=session, client=client)

    _emit(_run(action))


@app.command()
def gateway(
    config: Annotated[Path, typer.Option("--config", help="gateway.yaml: routes, trust, limits")],
) -> None:
    """Run the gateway: a reverse proxy enforcing tokens, scopes, limits and IP rules per route."""
    from tokenward.gateway.cli import run_gateway  # noqa: PLC0415 - only the gateway needs it

    run_gateway(str(config))


def main() -> None:
    # Whatever this process writes (database, keys, audit lines, token files) is its own only;
    # the data directory's files are also given their modes explicitly (tokenward.datadir).
    os.umask(0o077)
    app()
