"""Config sections other than routes: listen, limits, metrics, audit, TLS, identity, trust."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenward.gateway.model import (
    IDENTITY_DEFAULTS,
    BffSettings,
    DpopSettings,
    MonitorRelaySettings,
    RevocationSettings,
    SignedUrlSettings,
    Tls,
    Trust,
)
from tokenward.gateway.yamlnodes import Node
from tokenward.serving.limits import HeadLimits, LimitError
from tokenward.serving.tls import CERT_REQS
from tokenward.signedurl import KeySet
from tokenward.tokens.dpop import PROOF_ALGS


def listen(node: Node | None) -> tuple[str, int]:
    if node is None:
        return "127.0.0.1", 8080
    fields = node.mapping(frozenset({"host", "port"}))
    host = fields["host"].string() if "host" in fields else "127.0.0.1"
    port = fields["port"].integer(minimum=0) if "port" in fields else 8080
    return host, port


MAX_WORKERS = 64


def workers(node: Node | None, redis_url: str | None) -> int:
    """`workers: N` processes on one port. Above one, what must be shared is in Redis."""
    if node is None:
        return 1
    count = node.integer(minimum=1)
    if count > MAX_WORKERS:
        raise node.error(f"at most {MAX_WORKERS}")
    if count > 1 and redis_url is None:
        raise node.error(
            "more than one worker shares rate limits, idempotency keys, DPoP proofs and "
            "browser sessions "
            "through Redis: set rate_limits.redis_url (or revocations.redis_url)"
        )
    return count


LIMIT_INTEGERS = ("max_header_bytes", "max_url_bytes", "max_header_fields", "max_connections")


LIMIT_SECONDS = ("header_timeout", "body_timeout")


def limits(node: Node | None) -> HeadLimits:
    """`limits:` request heads, bodies and connections (tokenward.serving.limits has the
    defaults)."""
    if node is None:
        return HeadLimits()
    fields = node.mapping(frozenset({*LIMIT_INTEGERS, *LIMIT_SECONDS}))
    values: dict[str, Any] = {
        name: fields[name].integer(minimum=1) for name in LIMIT_INTEGERS if name in fields
    }
    values.update((name, fields[name].number()) for name in LIMIT_SECONDS if name in fields)
    try:
        return HeadLimits(**values)
    except LimitError as exc:
        at_fault = fields.get(exc.field or "")
        raise (at_fault or node).error(exc.detail) from None


def metrics(node: Node | None) -> tuple[str, int | None]:
    if node is None:
        return "127.0.0.1", None
    fields = node.mapping(frozenset({"host", "port"}))
    host = fields["host"].string() if "host" in fields else "127.0.0.1"
    if "port" not in fields:
        raise node.error("port: is required (metrics are served on their own port)")
    return host, fields["port"].integer(minimum=0)


def tracing(node: Node | None) -> bool:
    if node is None:
        return False
    fields = node.mapping(frozenset({"enabled"}))
    return fields["enabled"].boolean() if "enabled" in fields else True


def audit(node: Node | None) -> str | None:
    if node is None:
        return "-"
    fields = node.mapping(frozenset({"path", "enabled"}))
    if "enabled" in fields and not fields["enabled"].boolean():
        return None
    return fields["path"].string() if "path" in fields else "-"


def tls(node: Node | None) -> Tls:
    if node is None:
        return Tls()
    fields = node.mapping(
        frozenset(
            {
                "cert",
                "key",
                "hsts",
                "require_tls",
                "client_certs",
                "client_ca",
                "client_cert_header",
            }
        )
    )
    cert = fields["cert"].string() if "cert" in fields else None
    key = fields["key"].string() if "key" in fields else None
    if (cert is None) != (key is None):
        raise node.error("cert: and key: go together")
    client_certs = fields["client_certs"].string() if "client_certs" in fields else "none"
    if client_certs not in CERT_REQS:
        raise fields["client_certs"].error("must be none, optional or required")
    client_ca = fields["client_ca"].string() if "client_ca" in fields else None
    if client_certs != "none" and (cert is None or client_ca is None):
        raise node.error("client_certs: needs cert:, key: and client_ca: (the CAs to trust)")
    header = fields["client_cert_header"].string() if "client_cert_header" in fields else None
    if header is not None and not header.replace("-", "").isalnum():
        raise fields["client_cert_header"].error("must be a header name (letters, digits and -)")
    return Tls(
        cert=cert,
        key=key,
        hsts=fields["hsts"].string() if "hsts" in fields else None,
        require_tls=fields["require_tls"].boolean() if "require_tls" in fields else False,
        client_certs=client_certs,
        client_ca=client_ca,
        client_cert_header=header,
    )


def identity_headers(node: Node | None) -> dict[str, str]:
    names = dict(IDENTITY_DEFAULTS)
    if node is None:
        return names
    fields = node.mapping(frozenset(IDENTITY_DEFAULTS))
    for claim, value in fields.items():
        header = value.string().lower()
        if not header.replace("-", "").isalnum():
            raise value.error("must be a header name (letters, digits and -)")
        names[claim] = header
    return names


TRUST_FIELDS = frozenset({"issuer", "mode", "audience", "jwks_uri", "jwks_file", "introspection"})


def trust(node: Node | None) -> Trust:
    if node is None:
        return Trust()
    fields = node.mapping(TRUST_FIELDS)
    issuer = fields["issuer"].string() if "issuer" in fields else None
    mode = fields["mode"].choice(("remote", "local")) if "mode" in fields else "remote"
    audiences = tuple(fields["audience"].strings()) if "audience" in fields else ()
    jwks = fields["jwks_uri"].string() if "jwks_uri" in fields else None
    jwks_file = fields["jwks_file"].string() if "jwks_file" in fields else None
    if jwks and jwks_file:
        raise fields["jwks_file"].error("give jwks_uri: or jwks_file:, not both")
    trust = Trust(issuer=issuer, mode=mode, audiences=audiences, jwks_uri=jwks, jwks_file=jwks_file)
    if "introspection" in fields:
        trust = introspection(fields["introspection"], trust)
    return trust


def introspection(node: Node, trust: Trust) -> Trust:
    fields = node.mapping(
        frozenset(
            {
                "endpoint",
                "client_id",
                "client_secret_env",
                "client_secret_file",
                "negative_ttl",
                "max_ttl",
            }
        )
    )
    if "client_id" not in fields:
        raise node.error("client_id: is required (introspection needs client authentication)")
    if ("client_secret_env" in fields) == ("client_secret_file" in fields):
        raise node.error("give exactly one of client_secret_env: or client_secret_file:")
    return Trust(
        issuer=trust.issuer,
        mode=trust.mode,
        audiences=trust.audiences,
        jwks_uri=trust.jwks_uri,
        jwks_file=trust.jwks_file,
        introspection_endpoint=fields["endpoint"].string() if "endpoint" in fields else None,
        introspection_client_id=fields["client_id"].string(),
        introspection_secret_env=fields["client_secret_env"].string()
        if "client_secret_env" in fields
        else None,
        introspection_secret_file=fields["client_secret_file"].string()
        if "client_secret_file" in fields
        else None,
        introspection_negative_ttl=fields["negative_ttl"].number()
        if "negative_ttl" in fields
        else 5.0,
        introspection_max_ttl=fields["max_ttl"].number(minimum=1.0)
        if "max_ttl" in fields
        else 300.0,
    )


BFF_FIELDS = frozenset(
    {"client_id", "redirect_uri", "client_secret_env", "client_secret_file", "scopes",
     "allowed_origins", "secure_cookies", "session_ttl", "idle_timeout", "paths"}
)  # fmt: skip


def bff(node: Node | None) -> BffSettings | None:
    if node is None:
        return None
    fields = node.mapping(BFF_FIELDS)
    for required in ("client_id", "redirect_uri", "allowed_origins"):
        if required not in fields:
            raise node.error(f"{required}: is required")
    if ("client_secret_env" in fields) == ("client_secret_file" in fields):
        raise node.error("give exactly one of client_secret_env: or client_secret_file:")
    paths = (
        fields["paths"].mapping(frozenset({"login", "callback", "logout"}))
        if ("paths" in fields)
        else {}
    )
    for path in paths.values():
        if not path.string().startswith("/"):
            raise path.error("must start with /")
    origins = tuple(item.string().rstrip("/") for item in fields["allowed_origins"].listed())
    session_ttl = 8 * 3600.0
    if "session_ttl" in fields:
        session_ttl = fields["session_ttl"].number(minimum=60)
    idle = fields["idle_timeout"].number(minimum=60) if "idle_timeout" in fields else None
    if idle is not None and idle > session_ttl:
        raise fields["idle_timeout"].error("must not exceed session_ttl")
    return BffSettings(
        client_id=fields["client_id"].string(),
        redirect_uri=fields["redirect_uri"].string(),
        client_secret_env=_optional(fields, "client_secret_env"),
        client_secret_file=_optional(fields, "client_secret_file"),
        scopes=tuple(fields["scopes"].strings()) if "scopes" in fields else ("openid",),
        allowed_origins=origins,
        secure_cookies=fields["secure_cookies"].boolean() if "secure_cookies" in fields else True,
        session_ttl=session_ttl,
        idle_timeout=idle,
        login_path=paths["login"].string() if "login" in paths else "/bff/login",
        callback_path=paths["callback"].string() if "callback" in paths else "/bff/callback",
        logout_path=paths["logout"].string() if "logout" in paths else "/bff/logout",
    )


def _optional(fields: dict[str, Node], name: str) -> str | None:
    return fields[name].string() if name in fields else None


def public_url(node: Node | None) -> str | None:
    if node is None:
        return None
    url = node.string()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise node.error("must be an http:// or https:// URL (how clients reach this gateway)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise node.error("must be scheme://host[:port][/base-path] without query or credentials")
    try:
        _ = parts.port
    except ValueError:
        raise node.error("has an invalid port") from None
    return url.rstrip("/")


def dpop(node: Node | None) -> DpopSettings:
    if node is None:
        return DpopSettings()
    fields = node.mapping(frozenset({"algorithms", "nonce_secret_env", "nonce_secret_file"}))
    algorithms: tuple[str, ...] = PROOF_ALGS
    if "algorithms" in fields:
        algorithms = tuple(fields["algorithms"].strings())
        unknown = set(algorithms) - set(PROOF_ALGS)
        if unknown or not algorithms:
            raise fields["algorithms"].error(f"must be some of {', '.join(PROOF_ALGS)}")
    if "nonce_secret_env" in fields and "nonce_secret_file" in fields:
        raise node.error("give nonce_secret_env: or nonce_secret_file:, not both")
    return DpopSettings(
        algorithms=algorithms,
        nonce_secret_env=_optional(fields, "nonce_secret_env"),
        nonce_secret_file=_optional(fields, "nonce_secret_file"),
    )


def signed_url(node: Node | None, auth: str, route: Node) -> SignedUrlSettings | None:
    if node is None:
        if auth == "signed_url":
            raise route.error("signed_url: {keys: [...]} is required with auth: signed_url")
        return None
    if auth != "signed_url":
        raise node.error("needs auth: signed_url")
    fields = node.mapping(frozenset({"keys", "leeway", "allow_unsigned_query"}))
    if "keys" not in fields or not fields["keys"].listed():
        raise node.error("keys: is required (a list of {kid, secret_env | secret_file | secret})")
    keys = tuple(_signing_key(item) for item in fields["keys"].listed())
    try:
        KeySet.from_secrets(dict(keys), keys[0][0])  # the same checks as at serving time
    except ValueError as exc:
        raise fields["keys"].error(str(exc)) from None
    if len({kid for kid, _ in keys}) != len(keys):
        raise fields["keys"].error("a key id is used twice")
    flag = fields.get("allow_unsigned_query")
    return SignedUrlSettings(
        keys=keys,
        leeway=fields["leeway"].integer(minimum=0) if "leeway" in fields else 0,
        allow_unsigned_query=flag.boolean() if flag is not None else False,
    )


def _signing_key(node: Node) -> tuple[str, bytes]:
    fields = node.mapping(frozenset({"kid", "secret", "secret_env", "secret_file"}))
    if "kid" not in fields:
        raise node.error("kid: is required")
    sources = [name for name in ("secret", "secret_env", "secret_file") if name in fields]
    if len(sources) != 1:
        raise node.error("give exactly one of secret:, secret_env: or secret_file:")
    source = fields[sources[0]]
    if sources[0] == "secret":
        secret = source.string()
    elif sources[0] == "secret_env":
        secret = os.environ.get(source.string(), "")
        if not secret:
            raise source.error(f"the environment variable {source.string()} is not set")
    else:
        try:
            secret = Path(source.string()).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise source.error(f"cannot read the file: {exc.strerror}") from None
    encoded = secret.encode("utf-8")
    if len(encoded) < 32:
        raise source.error("a signing secret needs at least 32 bytes")
    return fields["kid"].string(), encoded


REVOCATION_FIELDS = frozenset(
    {"database_url", "database_url_env", "database_schema", "redis_url", "redis_url_env",
     "namespace", "resync_seconds", "max_staleness", "fail_open"}
)  # fmt: skip


def revocations(node: Node | None) -> RevocationSettings | None:
    if node is None:
        return None
    fields = node.mapping(REVOCATION_FIELDS)
    database = _url_or_env(fields, node, "database_url", required=True)
    if database is None:  # required=True raised already; this narrows the type
        raise node.error("database_url: (or database_url_env:) is required")
    if not database.startswith(("sqlite", "postgresql")):
        raise node.error("database_url must be sqlite+aiosqlite:// or postgresql+asyncpg://")
    redis = _url_or_env(fields, node, "redis_url", required=False)
    if redis is not None and not redis.startswith(("redis://", "rediss://", "unix://")):
        raise node.error("redis_url must be redis://, rediss:// or unix://")
    return RevocationSettings(
        database_url=database,
        database_schema=_optional(fields, "database_schema"),
        redis_url=redis,
        namespace=_optional(fields, "namespace"),
        resync_seconds=fields["resync_seconds"].number(minimum=0.05)
        if "resync_seconds" in fields
        else 2.0,
        max_staleness=fields["max_staleness"].number(minimum=0.1)
        if "max_staleness" in fields
        else 30.0,
        fail_open=fields["fail_open"].boolean() if "fail_open" in fields else False,
    )


def _url_or_env(fields: dict[str, Node], node: Node, name: str, *, required: bool) -> str | None:
    """`name:` inline, or `name_env:` naming the variable that holds it (URLs carry passwords)."""
    env = f"{name}_env"
    if name in fields and env in fields:
        raise node.error(f"give {name}: or {env}:, not both")
    if env in fields:
        value = os.environ.get(fields[env].string(), "")
        if not value:
            raise fields[env].error(f"the environment variable {fields[env].string()} is not set")
        return value
    if name in fields:
        return fields[name].string()
    if required:
        raise node.error(f"{name}: (or {env}:) is required")
    return None


MONITOR_FIELDS = frozenset(
    {
        "redis_url",
        "redis_url_env",
        "namespace",
        "stream",
        "buffer",
        "interval",
        "blocklist",
        "risk",
    }
)


def monitor(
    node: Node | None, revocations: RevocationSettings | None
) -> MonitorRelaySettings | None:
    if node is None:
        return None
    fields = node.mapping(MONITOR_FIELDS)
    redis = _url_or_env(fields, node, "redis_url", required=False)
    if redis is None and (revocations is None or revocations.redis_url is None):
        raise node.error(
            "monitor: needs redis_url: (or revocations.redis_url) to reach the servers"
        )
    if redis is not None and not redis.startswith(("redis://", "rediss://", "unix://")):
        raise node.error("redis_url must be redis://, rediss:// or unix://")
    return MonitorRelaySettings(
        redis_url=redis,
        namespace=_optional(fields, "namespace"),
        stream=_optional(fields, "stream"),
        buffer=int(fields["buffer"].number(minimum=1, integer=True))
        if "buffer" in fields
        else 10_000,
        interval=fields["interval"].number(minimum=0.01) if "interval" in fields else 0.2,
        blocklist=fields["blocklist"].boolean() if "blocklist" in fields else True,
        risk=fields["risk"].boolean() if "risk" in fields else False,
    )
