"""`tokenward login`, `tokenward token show`, `tokenward call`: the client SDK from a shell.

Tokens go to an encrypted file (default `~/.config/tokenward/tokens.json`, or `--store`, or
TOKENWARD_TOKEN_STORE), keyed by `--profile`. Its key comes from TOKENWARD_STORE_PASSPHRASE, else
the OS keyring, else a passphrase prompt on a terminal. No command prints a token unless asked
with `token show --raw`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from tokenward.client import (
    ClientError,
    DeviceAuthorization,
    DeviceCodeLogin,
    DpopKey,
    FileStore,
    Http,
    LoginRequired,
    TokenAuth,
    TokenSet,
)
from tokenward.client._flow import HTTP_FAILURES
from tokenward.client.errors import unreachable
from tokenward.client.keys import keyring_module
from tokenward.core.errors import JoseError
from tokenward.tokens.jws import parse_compact, payload_object

STORE_ENV = "TOKENWARD_TOKEN_STORE"
PASSPHRASE_ENV = "TOKENWARD_STORE_PASSPHRASE"
DEFAULT_PROFILE = "default"
CALL_TIMEOUT = 30.0

# Seams for tests: the clock and the pause between device-flow polls.
clock: Callable[[], float] = time.time
sleep: Callable[[float], None] = time.sleep


def _now() -> float:
    return clock()  # looked up per call, so a test's replacement applies


def _pause(seconds: float) -> None:
    sleep(seconds)


token_app = typer.Typer(no_args_is_help=True, help="Stored tokens")

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", envvar=STORE_ENV, help="Token file (default under ~/.config)"),
]
ProfileOption = Annotated[str, typer.Option("--profile", help="Name of the stored sign-in")]


def default_store_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "tokenward" / "tokens.json"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def open_store(path: Path | None) -> FileStore:
    passphrase: str | Callable[[], str] | None = os.environ.get(PASSPHRASE_ENV) or None
    use_keyring = passphrase is None and keyring_module() is not None
    if passphrase is None and sys.stdin.isatty():
        passphrase = _ask_passphrase
    if passphrase is None and not use_keyring:
        _fail(f"the token store needs a key: set {PASSPHRASE_ENV} or install keyring")
    return FileStore(
        path or default_store_path(), passphrase=passphrase, use_keyring=use_keyring, clock=_now
    )


def _ask_passphrase() -> str:
    return str(typer.prompt("Passphrase for the token store", hide_input=True, err=True))


def show_code(authorization: DeviceAuthorization) -> None:
    typer.echo(
        f"To sign in, open {authorization.verification_uri} and enter the code:\n\n"
        f"    {authorization.user_code}\n",
        err=True,
    )
    if authorization.verification_uri_complete:
        typer.echo(f"(or open {authorization.verification_uri_complete})", err=True)
    typer.echo("Waiting for approval...", err=True)


def _source(issuer: str, client_id: str, **options: Any) -> DeviceCodeLogin:
    return DeviceCodeLogin(
        issuer,
        client_id,
        prompt=show_code,
        http=Http(sleep=_pause),
        clock=_now,
        **options,
    )


def login(
    issuer: Annotated[str, typer.Option("--issuer", help="The authorization server's issuer")],
    client_id: Annotated[str, typer.Option("--client-id", help="A public client's id")],
    dpop: Annotated[bool, typer.Option("--dpop", help="Bind the tokens to a new DPoP key")] = False,
    scope: Annotated[str | None, typer.Option("--scope", help="Scopes to ask for")] = None,
    store: StoreOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
) -> None:
    """Sign in with the device flow (RFC 8628) and store the tokens."""
    tokens_store = open_store(store)
    key = DpopKey(clock=_now) if dpop else None
    try:
        with _source(issuer, client_id, scope=scope, dpop=key) as source:
            tokens = source.login()
        tokens_store.save(profile, tokens)
    except ClientError as exc:
        _fail(str(exc))
    _emit({"signed_in": True, "profile": profile, **_summary(tokens)})


def _summary(tokens: TokenSet) -> dict[str, Any]:
    now = clock()
    expires = tokens.expires_at
    return {
        "issuer": tokens.issuer,
        "client_id": tokens.client_id,
        "token_type": tokens.token_type,
        "scope": tokens.scope,
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat() if expires else None,
        "expires_in": int(expires - now) if expires else None,
        "expired": expires is not None and expires <= now,
        "refresh_token": tokens.refresh_token is not None,
        "dpop_jkt": tokens.dpop_key.thumbprint if tokens.dpop_key else None,
    }


def _unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWT access token's payload, for display only: nothing here checks its signature."""
    try:
        return payload_object(parse_compact(token))
    except (JoseError, ValueError):
        return None  # an opaque token: its claims live at the server (introspection)


def _load(store: Path | None, profile: str) -> tuple[FileStore, TokenSet]:
    tokens_store = open_store(store)
    try:
        tokens = tokens_store.load(profile)
    except ClientError as exc:
        _fail(str(exc))
    if tokens is None:
        _fail("not signed in: run `tokenward login --issuer URL --client-id ID`")
    return tokens_store, tokens


@token_app.command("show")
def token_show(
    raw: Annotated[bool, typer.Option("--raw", help="Print the access token itself")] = False,
    store: StoreOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
) -> None:
    """The stored token's claims (unverified) and expiry; the token itself only with --raw."""
    _, tokens = _load(store, profile)
    view = {
        "profile": profile,
        **_summary(tokens),
        "claims": _unverified_claims(tokens.access_token),
    }
    if raw:
        view["access_token"] = tokens.access_token
    _emit(view)


def call(
    url: Annotated[str, typer.Argument(help="The URL to request")],
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method")] = "GET",
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="'Name: value', repeatable")
    ] = None,
    store: StoreOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
) -> None:
    """An authenticated request with the stored token, renewed as needed. Body to stdout;
    exit status 1 for an HTTP error status."""
    tokens_store, tokens = _load(store, profile)
    if not tokens.issuer or not tokens.client_id:
        _fail("the stored sign-in does not say where it came from: sign in again")
    headers = dict(_header(line) for line in header or [])
    source = _source(tokens.issuer, tokens.client_id, dpop=tokens.dpop_key)
    auth = TokenAuth(source, store=tokens_store, store_key=profile, clock=_now)
    try:
        with source, httpx.Client(auth=auth, timeout=CALL_TIMEOUT) as http:
            response = http.request(method.upper(), url, content=data, headers=headers)
    except LoginRequired as exc:
        _fail(f"{exc}: run `tokenward login --issuer {tokens.issuer} --client-id ...`")
    except ClientError as exc:
        _fail(str(exc))
    except HTTP_FAILURES as exc:  # the API itself (the SDK maps its own calls already)
        _fail(str(unreachable(url, exc)))
    typer.echo(f"HTTP {response.status_code}", err=True)
    typer.echo(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


def _header(line: str) -> tuple[str, str]:
    name, separator, value = line.partition(":")
    if not separator or not name.strip():
        _fail(f"a header is 'Name: value', not {line[:40]!r}")
    if name.strip().lower() in ("authorization", "dpop"):
        _fail("the Authorization and DPoP headers are set by tokenward")
    return name.strip(), value.strip()
