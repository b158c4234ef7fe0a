"""Cedar policies through a real gateway: every example of docs/policies.md, loaded from the page,
allows and refuses as the page says; bad policies are refused at load and at reload (the old
ones stay); the step-up challenge is exact; the audit line names the deciding policies."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.docs.blocks import ROOT, blocks
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, Running, serve
from tests.gateway.processes import refused
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.gateway.config import ConfigError, load_config, parse_config
from tokenward.gateway.reload import Reloader
from tokenward.gateway.trust import remote_trust
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.store.memory import MemoryReplayCache, MemoryRevocationStore
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import Keyring
from tokenward.tokens.sealing import generate_master_key

PAGE = ROOT / "docs" / "policies.md"
BERLIN = ZoneInfo("Europe/Berlin")
MFA = "urn:tokenward:acr:mfa"
STEP_UP_CHALLENGE = (
    'Bearer realm="tokenward-gateway", error="insufficient_user_authentication", '
    'error_description="a stronger or more recent authentication is required", '
    f'acr_values="{MFA}", max_age=300'
)
# Formatted twice (here, then by the gateway fixture for {upstream}): block style, no braces.
ROUTE = """
trust:
  issuer: https://auth.example.com
  audience: {audience}
{top}
routes:
  - name: {name}
    prefix: {prefix}
    upstreams: [{{upstream}}]
    auth: bearer
    rate_limit: off
    policies:
      files: [{file}]{paths}
"""
SIGNED_IN = '@id("signed-in")\npermit (principal, action, resource);\n'


def example(policy_id: str) -> str:
    """The cedar block of docs/policies.md that defines `@id("<policy_id>")`."""
    found = [
        block.text
        for block in blocks(PAGE)
        if block.lang == "cedar" and f'@id("{policy_id}")' in block.text
    ]
    assert len(found) == 1, f"docs/policies.md has no single example {policy_id!r}"
    return found[0]


Mint = Callable[..., str]


@pytest.fixture
def token(strategy: JwtAccessTokenStrategy) -> Mint:
    def mint(subject: str = "alice", **claims: Any) -> str:
        acr = claims.pop("acr", None)
        auth_time = claims.pop("auth_time", None)
        grant = TokenGrant(
            subject, "client-1", (AUDIENCE,), frozenset({"read"}), auth_time=auth_time, acr=acr,
            extra=claims,
        )  # fmt: skip
        return strategy.mint_sync(grant).value

    return mint


def start_route(
    gateway: GatewayFactory,
    tmp_path: Path,
    policy: str,
    *,
    name: str = "api",
    prefix: str = "/api",
    paths: tuple[str, ...] = (),
    top: str = "",
) -> Running:
    file = tmp_path / f"{name}.cedar"
    file.write_text(policy)
    listed = ", ".join(f'"{path}"' for path in paths).replace("{", "{{").replace("}", "}}")
    text = ROUTE.format(
        audience=AUDIENCE,
        top=top,
        name=name,
        prefix=prefix,
        file=file,
        paths=f"\n      paths: [{listed}]" if paths else "",
    )
    return gateway(text)


def get(running: Running, path: str, bearer: str, **options: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {bearer}", **options.pop("headers", {})}
    return running.http.request(options.pop("method", "GET"), path, headers=headers, **options)


def at(clock: FrozenClock, text: str) -> None:
    clock.now = datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_admin_business_hours(
    gateway: GatewayFactory, tmp_path: Path, clock: FrozenClock, token: Mint
) -> None:
    running = start_route(
        gateway,
        tmp_path,
        example("admins-in-business-hours"),
        name="admin",
        prefix="/admin",
        top="policies:\n  timezone: Europe/Berlin",
    )
    at(clock, "2027-01-13T10:00")  # a Wednesday morning in Berlin (09:00 UTC)
    assert get(running, "/admin/users", token(roles=["admin"])).status_code == 200
    line = running.last_audit()
    assert line["decision"] == "allow"
    assert line["policies"] == ["admins-in-business-hours"]
    refused = get(running, "/admin/users", token(roles=["viewer"]))
    assert refused.status_code == 403
    assert refused.json()["error"] == "access_denied"
    assert running.last_audit()["reason"] == "policy_denied"
    assert running.last_audit()["policies"] == []  # no permit applied
    at(clock, "2027-01-13T18:30")  # the same day after hours
    assert get(running, "/admin/users", token(roles=["admin"])).status_code == 403
    at(clock, "2027-01-16T10:00")  # Saturday
    assert get(running, "/admin/users", token(roles="admin")).status_code == 403


def test_tenant_isolation(
    gateway: GatewayFactory, tmp_path: Path, clock: FrozenClock, token: Mint
) -> None:
    running = start_route(
        gateway,
        tmp_path,
        example("tenant-isolation"),
        name="orders",
        prefix="/tenants",
        paths=("/tenants/{tenant}/orders/{id}", "/tenants/{tenant}/orders"),
    )
    acme = token(tenant="acme")
    assert get(running, "/tenants/acme/orders/7", acme).status_code == 200
    assert get(running, "/tenants/acme/orders", acme).status_code == 200
    assert running.last_audit()["policies"] == ["tenant-isolation"]
    assert get(running, "/tenants/globex/orders/7", acme).status_code == 403
    assert get(running, "/tenants/acme/invoices", acme).status_code == 403  # no template
    assert get(running, "/tenants/acme/orders/7", token()).status_code == 403  # no tenant claim


def test_high_value_step_up(
    gateway: GatewayFactory, tmp_path: Path, clock: FrozenClock, token: Mint
) -> None:
    running = start_route(
        gateway, tmp_path, example("transfers-need-fresh-mfa"), name="transfers",
        prefix="/transfers",
    )  # fmt: skip
    now = int(clock())
    plain = token(auth_time=now - 60)
    assert get(running, "/transfers/1", plain).status_code == 200  # reading needs no step-up
    refused = get(running, "/transfers", plain, method="POST", content=b"{}")
    assert refused.status_code == 401
    assert refused.headers.get_list("www-authenticate") == [STEP_UP_CHALLENGE]
    assert refused.json()["error"] == "insufficient_user_authentication"
    line = running.last_audit()
    assert line["reason"] == "insufficient_user_authentication"
    assert line["policies"] == ["transfers-need-fresh-mfa"]
    stale = token(acr=MFA, auth_time=now - 301)
    stale_answer = get(running, "/transfers", stale, method="POST", content=b"{}")
    assert stale_answer.headers["www-authenticate"] == STEP_UP_CHALLENGE
    fresh = token(acr=MFA, auth_time=now - 120)
    assert get(running, "/transfers", fresh, method="POST", content=b"{}").status_code == 200
    assert running.last_audit()["policies"] == ["transfers"]
    clock.advance(200)  # the same token, now past five minutes: auth_age is never cached
    later = get(running, "/transfers", fresh, method="POST", content=b"{}")
    assert later.status_code == 401


def _geoip(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"country": {"iso_code": "DE"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "US"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "NL"}})
    writer.to_db_file(str(path))
    return path


def test_country_allow_list(
    gateway: GatewayFactory, tmp_path: Path, clock: FrozenClock, token: Mint
) -> None:
    database = _geoip(tmp_path / "countries.mmdb")
    running = start_route(
        gateway,
        tmp_path,
        example("allowed-countries"),
        # The loopback peer is a trusted proxy, so X-Forwarded-For names the client.
        top=f"trusted_proxies: [127.0.0.1/32]\npolicies:\n  geoip: {database}",
    )
    bearer = token()

    def from_address(address: str) -> int:
        return get(running, "/api/x", bearer, headers={"x-forwarded-for": address}).status_code

    assert from_address("192.0.2.10") == 200  # DE
    assert from_address("2001:db8::1") == 200  # NL
    assert from_address("198.51.100.7") == 403  # US
    assert running.last_audit()["policies"] == ["allowed-countries"]
    assert from_address("203.0.113.9") == 403  # not in the database
    assert from_address("192.0.2.11") == 200


def test_documented_config_loads(tmp_path: Path) -> None:
    """The page's YAML with the files it names: policies compiled for the route."""
    (text,) = [block.text for block in blocks(PAGE) if block.lang == "yaml"]
    fragment = yaml.safe_load(text)
    fragment["trust"] = {"issuer": "https://auth.example.com", "audience": AUDIENCE}
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "common.cedar").write_text(SIGNED_IN)
    (tmp_path / "policies" / "tenants.cedar").write_text(example("tenant-isolation"))
    _geoip(tmp_path / fragment["policies"]["geoip"])
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(fragment))
    config = load_config(path)
    (route,) = config.routes
    assert route.policies is not None
    assert route.policies.policies.labels == ("signed-in", "tenant-isolation")
    assert route.policies.templates.match("/tenants/a/orders/1") == (
        "/tenants/{tenant}/orders/{id}",
        {"tenant": "a", "id": "1"},
    )
    assert config.policies.timezone == "Europe/Berlin"
    assert route.policies.actions == {"POST": "orders.create"}


NAMED = """@id("create-orders")
permit (principal, action == Action::"orders.create", resource)
when { principal.roles.contains("clerk") };

@id("writes")
forbid (principal, action in Action::"write", resource)
unless { principal.roles.contains("clerk") };

@id("reads")
permit (principal, action in Action::"read", resource);
"""


def test_route_level_action_names(gateway: GatewayFactory, tmp_path: Path, token: Mint) -> None:
    file = tmp_path / "orders.cedar"
    file.write_text(NAMED)
    text = ROUTE.format(
        audience=AUDIENCE, top="", name="orders", prefix="/orders", file=file,
        paths="\n      actions: {{POST: orders.create}}",
    )  # fmt: skip
    running = gateway(text)
    clerk, guest = token(roles=["clerk"]), token(subject="bob")
    answer = get(running, "/orders", clerk, method="POST", content=b"{}")
    assert answer.status_code == 200, (answer.text, running.last_audit())
    assert running.last_audit()["policies"] == ["create-orders"]
    assert get(running, "/orders", guest, method="POST", content=b"{}").status_code == 403
    assert running.last_audit()["policies"] == ["writes"]
    # PUT has no name of its own here: no permit names it, so even a clerk is refused.
    assert get(running, "/orders/1", clerk, method="PUT", content=b"{}").status_code == 403
    assert get(running, "/orders/1", guest).status_code == 200
    undeclared = NAMED.replace("orders.create", "orders.delete")
    file.write_text(undeclared)
    with pytest.raises(ConfigError, match="unrecognized action"):
        parse_config(text.format(upstream="http://127.0.0.1:9"), str(tmp_path / "gw.yaml"))


BAD_POLICY = """@id("ok")
permit (principal, action, resource);

@id("typo")
forbid (principal, action, resource)
when { context.huor < 9 };
"""


def test_bad_policy_is_refused_at_load_with_its_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.cedar"
    file.write_text(BAD_POLICY)
    text = ROUTE.format(
        audience=AUDIENCE, top="", name="api", prefix="/api", file=file, paths=""
    ).format(upstream="http://127.0.0.1:9")
    with pytest.raises(ConfigError) as refused:
        parse_config(text, str(tmp_path / "gateway.yaml"))
    message = str(refused.value)
    assert f"{file}:4: " in message  # the forbid starts on line 4 (its annotation)
    assert "huor" in message
    file.write_text("permit (principal, action,\n  resource)\nwhen { true ")
    with pytest.raises(ConfigError, match=f"{file}:1: "):
        parse_config(text, str(tmp_path / "gateway.yaml"))
    file.write_text('@step_up("acr=x;max_age=soon")\nforbid (principal, action, resource);')
    with pytest.raises(ConfigError, match="max_age must be a whole number"):
        parse_config(text, str(tmp_path / "gateway.yaml"))


def test_policy_file_edits_reload_and_bad_ones_keep_the_old_policies(
    gateway: GatewayFactory, tmp_path: Path, upstream_url: str, token: Mint
) -> None:
    deny_all = '@id("nobody")\nforbid (principal, action, resource);\n' + SIGNED_IN
    running = start_route(gateway, tmp_path, deny_all)
    bearer = token()
    assert get(running, "/api/x", bearer).status_code == 403
    config = tmp_path / "gateway.yaml"
    policy = tmp_path / "api.cedar"
    config.write_text(
        ROUTE.format(audience=AUDIENCE, top="", name="api", prefix="/api", file=policy, paths="")
        .format(upstream=upstream_url)
    )  # fmt: skip
    reloader = Reloader(running.gateway, config)
    assert reloader.check() is None  # nothing changed yet
    policy.write_text(SIGNED_IN)  # only the policy file changes
    assert reloader.check() is True
    assert get(running, "/api/x", bearer).status_code == 200
    policy.write_text(BAD_POLICY)
    assert reloader.check() is False
    assert reloader.last_error is not None
    assert f"{policy}:4: " in reloader.last_error
    assert get(running, "/api/x", bearer).status_code == 200  # the previous policies stay
    assert running.last_audit()["policies"] == ["signed-in"]


@pytest.fixture
def dpop_validator(
    keyring: Keyring, clock: FrozenClock, revocations: MemoryRevocationStore
) -> Validator:
    mirror = RevocationMirror()
    revocations.attach(mirror)
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        clock=clock,
        leeway=30,
        dpop=DpopVerifier(MemoryReplayCache(clock).first_use, None, clock),
    )


def test_step_up_on_a_dpop_route_uses_the_dpop_scheme(
    gateway: GatewayFactory,
    tmp_path: Path,
    clock: FrozenClock,
    strategy: JwtAccessTokenStrategy,
    dpop_validator: Validator,
) -> None:
    """RFC 9449 §7.1: a dpop route's challenges are DPoP ones, RFC 9470's parameters included."""
    file = tmp_path / "transfers.cedar"
    file.write_text(example("transfers-need-fresh-mfa"))
    text = ROUTE.format(
        audience=AUDIENCE, top="", name="transfers", prefix="/transfers", file=file, paths=""
    ).replace("auth: bearer", "auth: dpop")
    running = gateway(text, validator=dpop_validator)
    key = DpopKey(clock=clock)
    now = int(clock())

    def post(auth_time: int) -> httpx.Response:
        grant = TokenGrant(
            "alice", "client-1", (AUDIENCE,), frozenset({"read"}), auth_time=auth_time, acr=MFA,
            cnf={"jkt": key.thumbprint},
        )  # fmt: skip
        bound = strategy.mint_sync(grant).value
        proof = key.proof("POST", running.base + "/transfers", access_token=bound)
        headers = {"authorization": f"DPoP {bound}", "dpop": proof}
        return running.http.post("/transfers", headers=headers, content=b"{}")

    refused = post(now - 3600)
    assert refused.status_code == 401
    algs = " ".join(dpop_validator.dpop.algorithms if dpop_validator.dpop else ())
    expected = STEP_UP_CHALLENGE.replace("Bearer ", "DPoP ", 1) + f', algs="{algs}"'
    assert refused.headers.get_list("www-authenticate") == [expected]
    assert post(now - 60).status_code == 200


def test_gateway_refuses_to_start_on_a_bad_policy(tmp_path: Path) -> None:
    """The real `tokenward gateway`: one line naming the policy file and line, exit status 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    policy = tmp_path / "api.cedar"
    policy.write_text(BAD_POLICY)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        ROUTE.format(audience=AUDIENCE, top="", name="api", prefix="/api", file=policy, paths="")
        .format(upstream="http://127.0.0.1:9")
        .replace("audience:", f"jwks_file: {tmp_path / 'jwks.json'}\n  audience:")
    )  # fmt: skip
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    status, stderr = refused(config, env)
    assert status == 2, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("tokenward gateway: ")
    assert f"{policy}:4: " in line


async def _authorization_server(issuer: str, clock: FrozenClock) -> tuple[Services, str]:
    settings = Settings(issuer=issuer, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    created = await services.client_admin.create_client(
        "svc", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    return services, created["client_secret"]


def test_tokens_from_the_real_authorization_server(
    gateway: GatewayFactory, tmp_path: Path, clock: FrozenClock
) -> None:
    """A token the server issues (client_credentials: no user, no auth_time) reads, and is
    asked to step up for a POST: it can never be fresh enough."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    services, secret = asyncio.run(_authorization_server(base, clock))
    with serve(server_app(services), port):
        file = tmp_path / "transfers.cedar"
        file.write_text(example("transfers-need-fresh-mfa"))
        text = (
            f"trust: {{{{issuer: {base}, audience: {base}/api}}}}\n"
            "routes:\n"
            "  - {{name: transfers, prefix: /transfers, upstreams: [{upstream}], auth: bearer,\n"
            f"     scopes: [read], policies: {{{{files: [{file}]}}}}}}}}\n"
        )
        config = parse_config(text.format(upstream="http://127.0.0.1:9"))
        trust = asyncio.run(remote_trust(config.trust, config, clock))
        running = gateway(text, validator=trust.validator)
        issued = httpx.post(
            f"{base}/token",
            data={"grant_type": "client_credentials", "scope": "read"},
            auth=("svc", secret),
        )
        bearer = issued.json()["access_token"]
        assert get(running, "/transfers/1", bearer).status_code == 200
        assert running.last_audit()["policies"] == ["transfers"]
        refused = get(running, "/transfers", bearer, method="POST", content=b"{}")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == STEP_UP_CHALLENGE
        assert running.last_audit()["sub"] == "svc"
