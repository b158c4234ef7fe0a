"""Config sections other than routes: listen, metrics, audit, TLS, identity headers, trust."""

from __future__ import annotations

from tokenward.gateway.model import IDENTITY_DEFAULTS, BffSettings, Tls, Trust
from tokenward.gateway.yamlnodes import Node


def listen(node: Node | None) -> tuple[str, int]:
    if node is None:
        return "127.0.0.1", 8080
    fields = node.mapping(frozenset({"host", "port"}))
    host = fields["host"].string() if "host" in fields else "127.0.0.1"
    port = fields["port"].integer(minimum=0) if "port" in fields else 8080
    return host, port


def metrics(node: Node | None) -> tuple[str, int | None]:
    if node is None:
        return "127.0.0.1", None
    fields = node.mapping(frozenset({"host", "port"}))
    host = fields["host"].string() if "host" in fields else "127.0.0.1"
    if "port" not in fields:
        raise node.error("port: is required (metrics are served on their own port)")
    return host, fields["port"].integer(minimum=0)


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
    fields = node.mapping(frozenset({"cert", "key", "hsts", "require_tls"}))
    cert = fields["cert"].string() if "cert" in fields else None
    key = fields["key"].string() if "key" in fields else None
    if (cert is None) != (key is None):
        raise node.error("cert: and key: go together")
    return Tls(
        cert=cert,
        key=key,
        hsts=fields["hsts"].string() if "hsts" in fields else None,
        require_tls=fields["require_tls"].boolean() if "require_tls" in fields else False,
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
     "allowed_origins", "secure_cookies", "session_ttl", "paths"}
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
    return BffSettings(
        client_id=fields["client_id"].string(),
        redirect_uri=fields["redirect_uri"].string(),
        client_secret_env=_optional(fields, "client_secret_env"),
        client_secret_file=_optional(fields, "client_secret_file"),
        scopes=tuple(fields["scopes"].strings()) if "scopes" in fields else ("openid",),
        allowed_origins=origins,
        secure_cookies=fields["secure_cookies"].boolean() if "secure_cookies" in fields else True,
        session_ttl=fields["session_ttl"].number(minimum=60)
        if "session_ttl" in fields
        else 8 * 3600.0,
        login_path=paths["login"].string() if "login" in paths else "/bff/login",
        callback_path=paths["callback"].string() if "callback" in paths else "/bff/callback",
        logout_path=paths["logout"].string() if "logout" in paths else "/bff/logout",
    )


def _optional(fields: dict[str, Node], name: str) -> str | None:
    return fields[name].string() if name in fields else None
