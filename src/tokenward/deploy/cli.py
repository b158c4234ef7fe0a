"""`tokenward` command line: serve, and manage clients, users, keys and revocations. JSON out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from tokenward import __version__, client_cli
from tokenward.config import Settings, loopback_issuer
from tokenward.deploy import serve as serve_process
from tokenward.deploy import startup
from tokenward.deploy.startup import StartupError
from tokenward.deploy.wiring import Services
from tokenward.oauth.profiles import profile_named
from tokenward.services import demo as demo_accounts
from tokenward.services.errors import AdminError
from tokenward.services.views import client_view, iso_time, user_view
from tokenward.tokens.jws import parse_compact, payload_object
from tokenward.tokens.keyring import KeyRotationError
from tokenward.tokens.sealing import generate_master_key

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
client_app = typer.Typer(no_args_is_help=True, help="OAuth clients")
user_app = typer.Typer(no_args_is_help=True, help="End users")
keys_app = typer.Typer(no_args_is_help=True, help="Signing keys")
monitor_app = typer.Typer(no_args_is_help=True, help="Usage monitoring")
registration_token_app = typer.Typer(
    no_args_is_help=True, help="Initial access tokens for dynamic client registration (RFC 7591)"
)
client_app.add_typer(registration_token_app, name="registration-token")
app.add_typer(client_app, name="client")
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")
app.add_typer(monitor_app, name="monitor")
app.command("login")(client_cli.login)
app.command("call")(client_cli.call)
app.add_typer(client_cli.token_app, name="token")


class State:
    data_dir: Path | None = None  # None: TOKENWARD_DATA_DIR, else ./var
    issuer: str | None = None


def _settings(**overrides: Any) -> Settings:
    """Flag > TOKENWARD_* environment > <data_dir>/tokenward.env > default (config.load_settings);
    a bad setting is one line and exit 2."""
    overrides.setdefault("issuer", State.issuer)
    try:
        return startup.settings(data_dir=State.data_dir, **overrides)
    except StartupError as exc:
        _startup_failed(exc)


def _startup_failed(exc: StartupError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _run(
    action: Callable[[Any], Awaitable[T]],
    settings: Settings | None = None,
    *,
    create_schema: bool = False,
) -> T:
    """Open the stores and services, run one action, close. Clear errors, no traces: exit 2 when
    tokenward cannot start as configured, 1 when the action itself is refused."""

    resolved = settings or _settings()

    async def main() -> T:
        services = await startup.open_services(resolved, create_schema=create_schema)
        try:
            return await action(services)
        finally:
            await services.stores.aclose()

    try:
        return asyncio.run(main())
    except StartupError as exc:
        _startup_failed(exc)
    except (AdminError, KeyRotationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokenward {__version__}")
        raise typer.Exit


@app.callback()
def main_options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the database and keys live [default: TOKENWARD_DATA_DIR, else ./var]",
            show_default=False,
        ),
    ] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Exact issuer URL")] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    State.data_dir = data_dir
    State.issuer = issuer


@app.command()
def init() -> None:
    """Create the data directory, a master key file (0600), the database (and its PostgreSQL
    schema) and the first keys, where absent."""
    settings = _settings()
    key_file = settings.master_key_file or settings.data_dir / "master.key"
    created = False
    try:
        startup.check_data_dir(settings.data_dir)
        if settings.master_key is None and not key_file.exists():
            _write_master_key(key_file)
            created = True
    except StartupError as exc:
        _startup_failed(exc)
    kids = _run(
        lambda services: _async([key.kid for key in services.keys.managed_keys()]),
        settings,
        create_schema=True,
    )
    _emit({"data_dir": str(settings.data_dir), "master_key_created": created, "keys": kids})


def _write_master_key(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StartupError(
            f"cannot create the master key file {path}: {exc.strerror} "
            "(TOKENWARD_MASTER_KEY_FILE, or set TOKENWARD_MASTER_KEY instead)"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_master_key() + "\n")


async def _async(value: T) -> T:
    return value


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Exact issuer URL")] = None,
    ssl_certfile: Annotated[
        str | None, typer.Option("--ssl-certfile", help="Serve https with this certificate (PEM)")
    ] = None,
    ssl_keyfile: Annotated[
        str | None, typer.Option("--ssl-keyfile", help="Its private key (PEM)")
    ] = None,
    ssl_ca_certs: Annotated[
        str | None,
        typer.Option("--ssl-ca-certs", help="CAs that client certificates must chain to (mTLS)"),
    ] = None,
    ssl_cert_reqs: Annotated[
        str | None,
        typer.Option("--ssl-cert-reqs", help="Client certificates: none, optional or required"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes sharing the port (TOKENWARD_WORKERS, default 1; docs/deployment.md)",
        ),
    ] = None,
) -> None:
    """Serve the authorization server. The issuer is --issuer, else TOKENWARD_ISSUER, else
    http(s)://HOST:PORT on a loopback address. --ssl-* (or TOKENWARD_SSL_*): terminate TLS here,
    with client certificates for mTLS (docs/mtls.md)."""
    tls = {
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "ssl_ca_certs": ssl_ca_certs,
        "ssl_cert_reqs": ssl_cert_reqs,
    }
    overrides: dict[str, Any] = {name: value for name, value in tls.items() if value is not None}
    if workers is not None:
        overrides["workers"] = workers
    _serve(_server_settings(host, port, issuer, **overrides), host, port)


def _server_settings(host: str, port: int, issuer: str | None, **tls: Any) -> Settings:
    secure = bool(tls.get("ssl_certfile") or os.environ.get("TOKENWARD_SSL_CERTFILE"))
    settings = _settings(
        issuer=issuer or State.issuer,
        default_issuer=loopback_issuer(host, port, https=secure),
        **tls,
    )
    if "issuer" not in settings.model_fields_set:
        _startup_failed(
            StartupError(
                f"serving on {host} needs TOKENWARD_ISSUER: set it (or --issuer) to the https URL "
                "clients reach this server at, e.g. TOKENWARD_ISSUER=https://auth.example.com"
            )
        )
    return settings


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
) -> None:
    """`make run`: init, demo client, user and admin; print their logins and a first call; serve."""
    init()
    settings = _server_settings(host, port, None)
    logins = _run(lambda s: s.demo.prepare(), settings)
    program = sys.argv[0] if Path(sys.argv[0]).name == "tokenward" else "tokenward"
    typer.echo(
        demo_accounts.banner(
            settings.issuer, logins, program=program, data_dir=str(settings.data_dir)
        )
    )
    _serve(settings, host, port)


def _serve(settings: Settings, host: str, port: int) -> None:
    serve_process.serve(settings, host, port, _startup_failed)


# --- clients -------------------------------------------------------------------------------
@client_app.command("create")
def client_create(
    client_id: Annotated[str, typer.Option("--client-id")],
    grant_type: Annotated[list[str], typer.Option("--grant-type", help="Repeatable")],
    scope: Annotated[str, typer.Option("--scope")] = "",
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            help="Repeatable: https, http on loopback, or com.example.app:/path (RFC 8252)",
        ),
    ] = None,
    post_logout_redirect_uri: Annotated[
        list[str] | None, typer.Option("--post-logout-redirect-uri", help="Repeatable")
    ] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="Default: generated")] = None,
    public: Annotated[bool, typer.Option("--public")] = False,
    auth_method: Annotated[str | None, typer.Option("--auth-method")] = None,
    token_format: Annotated[str, typer.Option("--token-format")] = "jwt",
    skip_consent: Annotated[bool, typer.Option("--skip-consent")] = False,
    audience: Annotated[list[str] | None, typer.Option("--audience", help="Repeatable")] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help="A JSON file of the client's public keys (a JWKS), for private_key_jwt (the "
            "default with keys) and signed request objects",
            dir_okay=False,
        ),
    ] = None,
    jwks_uri: Annotated[
        str | None,
        typer.Option(
            "--jwks-uri",
            help="Where the client publishes its public keys (https), fetched and cached: as "
            "--jwks",
        ),
    ] = None,
    exchange_audience: Annotated[
        list[str] | None,
        typer.Option(
            "--exchange-audience",
            help="Repeatable: an audience this client may get by token exchange (RFC 8693)",
        ),
    ] = None,
    exchange_impersonation: Annotated[
        bool,
        typer.Option(
            "--exchange-impersonation",
            help="Token exchange without an actor token impersonates (default: delegates)",
        ),
    ] = False,
    tls_subject_dn: Annotated[
        str | None,
        typer.Option(
            "--tls-subject-dn",
            help="tls_client_auth: the certificate's subject DN (RFC 4514, e.g. CN=svc,O=Example)",
        ),
    ] = None,
    tls_san_dns: Annotated[
        str | None, typer.Option("--tls-san-dns", help="tls_client_auth: a dNSName SAN")
    ] = None,
    tls_san_uri: Annotated[
        str | None, typer.Option("--tls-san-uri", help="tls_client_auth: a URI SAN")
    ] = None,
    tls_san_ip: Annotated[
        str | None, typer.Option("--tls-san-ip", help="tls_client_auth: an iPAddress SAN")
    ] = None,
    tls_san_email: Annotated[
        str | None, typer.Option("--tls-san-email", help="tls_client_auth: an rfc822Name SAN")
    ] = None,
    tls_bound_tokens: Annotated[
        bool | None,
        typer.Option(
            "--tls-bound-tokens/--no-tls-bound-tokens",
            help="Bind access tokens to the client certificate (RFC 8705 §3; default: yes for "
            "tls_client_auth and self_signed_tls_client_auth)",
        ),
    ] = None,
    access_token_alg: Annotated[
        str | None,
        typer.Option(
            "--access-token-alg",
            help="Sign this client's access tokens with this algorithm (e.g. ML-DSA-65)",
        ),
    ] = None,
    id_token_alg: Annotated[
        str | None,
        typer.Option(
            "--id-token-alg",
            help="id_token_signed_response_alg (default RS256, ES256 under fapi2; ML-DSA-65...)",
        ),
    ] = None,
    backchannel_logout_uri: Annotated[
        str | None,
        typer.Option(
            "--backchannel-logout-uri",
            help="Where logout tokens go when a session ends (OpenID Back-Channel Logout)",
        ),
    ] = None,
    require_par: Annotated[
        bool,
        typer.Option("--require-par", help="Authorization requests only pushed to /par (RFC 9126)"),
    ] = False,
    require_signed_request_object: Annotated[
        bool,
        typer.Option(
            "--require-signed-request-object",
            help="Authorization requests only as signed request objects (RFC 9101); needs keys",
        ),
    ] = False,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="Security profile: baseline, or fapi2 (FAPI 2.0 Security Profile, docs/fapi2.md)",
        ),
    ] = "baseline",
    min_acr: Annotated[
        str | None,
        typer.Option(
            "--min-acr",
            help="The weakest sign-in its users may have: urn:tokenward:acr:pwd, "
            "urn:tokenward:acr:mfa or urn:tokenward:acr:phr (docs/second-factors.md)",
        ),
    ] = None,
) -> None:
    """Register a client; prints its secret once."""
    key_set = _read_text(jwks) if jwks is not None else None
    tls_subject = {
        "tls_client_auth_subject_dn": tls_subject_dn,
        "tls_client_auth_san_dns": tls_san_dns,
        "tls_client_auth_san_uri": tls_san_uri,
        "tls_client_auth_san_ip": tls_san_ip,
        "tls_client_auth_san_email": tls_san_email,
    }
    _emit(
        _run(
            lambda s: s.client_admin.create_client(
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
                jwks=key_set,
                jwks_uri=jwks_uri,
                post_logout_redirect_uris=post_logout_redirect_uri,
                exchange_audiences=exchange_audience,
                exchange_impersonation=exchange_impersonation,
                tls_subject={name: value for name, value in tls_subject.items() if value},
                tls_bound_tokens=tls_bound_tokens,
                access_token_alg=access_token_alg,
                id_token_signed_response_alg=id_token_alg,
                backchannel_logout_uri=backchannel_logout_uri,
                backchannel_logout_session_required=backchannel_logout_uri is not None,
                require_par=require_par,
                require_signed_request_object=require_signed_request_object,
                profile=profile,
                min_acr=min_acr,
            )
        )
    )


@client_app.command("update")
def client_update(
    client_id: str,
    min_acr: Annotated[
        str | None,
        typer.Option(
            "--min-acr",
            help="The weakest sign-in its users may have (an acr level; 'none': any)",
        ),
    ] = None,
) -> None:
    """Change a client's settings (now: its minimum authentication level)."""
    if min_acr is None:
        typer.echo("error: nothing to change (give --min-acr)", err=True)
        raise typer.Exit(2)
    level = None if min_acr == "none" else min_acr
    _emit(_run(lambda s: s.client_admin.set_min_acr(client_id, level)))


@client_app.command("set-keys")
def client_set_keys(
    client_id: str,
    jwks: Annotated[
        Path | None, typer.Option("--jwks", help="A JSON file of the new keys", dir_okay=False)
    ] = None,
    jwks_uri: Annotated[
        str | None, typer.Option("--jwks-uri", help="Or where to fetch them")
    ] = None,
) -> None:
    """Replace a client's public keys (a JWKS file or a jwks_uri)."""
    key_set = _read_text(jwks) if jwks is not None else None
    _emit(
        _run(lambda s: s.client_admin.set_client_keys(client_id, jwks=key_set, jwks_uri=jwks_uri))
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", err=True)
        raise typer.Exit(1) from None


@client_app.command("list")
def client_list() -> None:

    async def action(services: Any) -> list[dict[str, Any]]:
        return [client_view(c) for c in await services.stores.clients.list_all()]

    _emit(_run(action))


@client_app.command("disable")
def client_disable(client_id: str) -> None:
    """Disable a client and revoke every token it holds."""

    _emit(_run(lambda s: s.client_admin.set_client_disabled(client_id, True)))


@client_app.command("rotate-secret")
def client_rotate_secret(client_id: str) -> None:
    """Give a confidential client a new generated secret (printed once)."""

    _emit(_run(lambda s: s.client_admin.rotate_client_secret(client_id)))


@registration_token_app.command("create")
def registration_token_create(
    ttl: Annotated[
        float, typer.Option("--ttl", help="Seconds it stays usable (60 s to 30 days)")
    ] = 86400.0,
    max_uses: Annotated[
        int | None,
        typer.Option("--max-uses", help="Registrations it allows [default: unlimited]"),
    ] = None,
) -> None:
    """Create an initial access token for POST /register (TOKENWARD_REGISTRATION=initial_token);
    prints it once."""
    _emit(_run(lambda s: s.initial_tokens.create(ttl, max_uses)))


@registration_token_app.command("list")
def registration_token_list() -> None:
    """Initial access tokens by id (never the tokens): uses, expiry, revoked."""
    _emit(_run(lambda s: s.initial_tokens.list()))


@registration_token_app.command("revoke")
def registration_token_revoke(token_id: str) -> None:
    """Revoke an initial access token; clients it registered stay."""
    _emit(_run(lambda s: s.initial_tokens.revoke(token_id)))


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
    _emit(_run(lambda s: s.user_admin.create_user(username, password)))


@user_app.command("list")
def user_list() -> None:
    """Every user: id, username, disabled, admin, dates (never a password hash)."""

    async def action(services: Services) -> list[dict[str, Any]]:
        return [user_view(user) for user in await services.stores.users.list_all()]

    _emit(_run(action))


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Option("--username")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = True,
) -> None:
    """Change a password; every token issued to the user before now is revoked."""

    password = _password_from_stdin()
    _emit(_run(lambda s: s.user_admin.set_password(username, password)))


@user_app.command("admin")
def user_admin(
    username: Annotated[str, typer.Option("--username")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the admin role away")] = False,
) -> None:
    """Give a user the tokenward:admin role (the admin console and /admin/api)."""
    _emit(_run(lambda s: s.user_admin.set_admin(username, not revoke)))


# --- keys ----------------------------------------------------------------------------------
@keys_app.command("list")
def keys_list() -> None:
    async def action(services: Any) -> list[dict[str, Any]]:
        return [
            {
                "kid": k.kid,
                "alg": k.alg.name,
                "state": k.state.value,
                "created_at": iso_time(k.created_at),
                "activated_at": iso_time(k.activated_at),
                "retiring_at": iso_time(k.retiring_at),
                "retired_at": iso_time(k.retired_at),
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


@keys_app.command("migrate")
def keys_migrate(
    to: Annotated[str, typer.Option("--to", help="The algorithm to sign with, e.g. ML-DSA-65")],
    audience: Annotated[
        str | None,
        typer.Option("--audience", help="Only access tokens for this audience (resource)"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Switch now, before caches can have seen the new key"),
    ] = False,
) -> None:
    """Move access-token signing to another algorithm without a failed request: the new key is
    published now, signing switches once caches know it, and the old keys retire when no live
    token can carry them (docs/post-quantum.md)."""

    async def action(services: Any) -> dict[str, Any]:
        # FAPI 2.0 §5.4: a fapi2 deployment's tokens stay PS256, ES256 or EdDSA.
        refusal = profile_named(services.settings.profile).alg_refusal(to, "access tokens")
        if refusal is not None:
            raise KeyRotationError(refusal)
        plan = await services.keys.migrate(to, audience, force=force)
        return {
            "audience": plan.audience,
            "alg": plan.alg,
            "previous": plan.previous,
            "kid": plan.kid,
            "switch_at": iso_time(plan.switch_at),
            "old_keys_verify_for_seconds_after_switch": plan.retire_after,
        }

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
        return await services.watermarks.revoke(
            jti=jti, subject=target, session=session, client=client
        )

    _emit(_run(action))


@app.command()
def gateway(
    config: Annotated[Path, typer.Option("--config", help="gateway.yaml: routes, trust, limits")],
) -> None:
    """Run the gateway: a reverse proxy enforcing tokens, scopes, limits and IP rules per route."""
    from tokenward.deploy.gateway import run_gateway  # noqa: PLC0415 - only the gateway needs it

    # Local trust mode reads the same settings as serve; a bad one is the gateway's one line.
    run_gateway(
        str(config), settings=lambda: startup.settings(data_dir=State.data_dir, issuer=State.issuer)
    )


@monitor_app.command("replay")
def monitor_replay(
    audit: Annotated[Path, typer.Argument(help="A gateway audit log (JSON lines); - for stdin")],
    risk: Annotated[
        bool, typer.Option("--risk/--no-risk", help="Score with the learned risk detector too")
    ] = True,
) -> None:
    """Replay gateway audit lines through the monitor in event time: one JSON line per alert
    (detector, target, time, score, explanation, responses). Responses act on memory only."""
    from pydantic import ValidationError  # noqa: PLC0415

    from tokenward.deploy.monitor_replay import run_replay  # noqa: PLC0415
    from tokenward.monitor.config import MonitorSettings  # noqa: PLC0415

    try:
        settings = MonitorSettings()
    except ValidationError as exc:
        _startup_failed(StartupError(f"TOKENWARD_MONITOR_*: {exc.errors()[0]['msg']}"))
    if risk:
        settings = settings.model_copy(
            update={"risk": settings.risk.model_copy(update={"enabled": True})}
        )
    try:
        source = sys.stdin.buffer if str(audit) == "-" else audit.open("rb")
    except OSError as exc:
        _startup_failed(StartupError(f"cannot read {audit}: {exc.strerror}"))
    with source:
        count = asyncio.run(run_replay(source, sys.stdout, settings, errors=sys.stderr))
    typer.echo(f"{count} alerts", err=True)


def main() -> None:
    # Whatever this process writes (database, keys, audit lines, token files) is its own only;
    # the data directory's files are also given their modes explicitly (tokenward.datadir).
    os.umask(0o077)
    app()
