"""The Cedar engine on its own: statement lines, @step_up, fail-closed evaluation, what is cached
(and what is not), claims as Cedar attributes and tags, and the MaxMind country seam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from tests.conftest import FrozenClock
from tokenward.core.claims import AccessToken
from tokenward.guard.authz import PolicyEngine, PolicyError, RequestFacts, load_policy_set
from tokenward.guard.authz.context import MaxMindCountries, iso_code
from tokenward.guard.authz.engine import ALLOW, DENY, ERROR, STEP_UP
from tokenward.guard.authz.source import PolicyFile, statements
from tokenward.guard.authz.stepup import StepUp, merge, parse_step_up
from tokenward.guard.authz.templates import PathTemplates, TemplateError

NOW = 1_800_000_000


def access_token(**fields: Any) -> AccessToken:
    extra = fields.pop("extra", {})
    return AccessToken(
        "https://issuer.example", fields.pop("sub", "alice"), ("api",), "client-1",
        frozenset({"read"}), NOW + 600, NOW, fields.pop("jti", "jti-1"), extra=extra, **fields,
    )  # fmt: skip


def engine(text: str, clock: FrozenClock | None = None, **options: Any) -> PolicyEngine:
    policies = load_policy_set([PolicyFile("test.cedar", text)])
    return PolicyEngine(policies, clock=clock or FrozenClock(NOW), **options)


def facts(method: str = "GET", path: str = "/x", ip: str = "192.0.2.1") -> RequestFacts:
    return RequestFacts(method, "api", path, ip)


def test_statements_know_strings_comments_and_lines() -> None:
    text = (
        '// a comment; not a statement\n@id("a;b")\npermit (principal, action, resource)\n'
        'when { "x;y" == "x;y" };\n\n  forbid (principal, action, resource) // trailing;\n'
        "when { true };\n"
    )
    found = statements(text)
    assert [line for line, _ in found] == [2, 6]
    assert found[0][1].startswith('@id("a;b")')
    assert found[0][1].endswith("};")


def test_step_up_syntax() -> None:
    assert parse_step_up("acr=urn:a urn:b;max_age=300") == StepUp("urn:a urn:b", 300)
    assert parse_step_up("max_age=0") == StepUp(None, 0)
    assert parse_step_up(" acr = urn:a ") == StepUp("urn:a", None)
    for bad in ("", "acr=", "level=2", "max_age=-1", "max_age=5m", "acr=a;acr=b"):
        with pytest.raises(ValueError, match="@step_up"):
            parse_step_up(bad)
    assert merge([StepUp("urn:a", 600), StepUp("urn:b urn:a", 300)]) == StepUp("urn:a urn:b", 300)


def test_step_up_on_a_permit_is_refused_with_its_line() -> None:
    with pytest.raises(PolicyError) as refused:
        engine('\n@step_up("max_age=60")\npermit (principal, action, resource);')
    assert refused.value.errors == ("test.cedar:2: @step_up belongs on a forbid policy",)


def test_duplicate_ids_and_templates_are_refused() -> None:
    with pytest.raises(PolicyError, match="used by two policies"):
        engine(
            '@id("a") permit (principal, action, resource);\n'
            '@id("a") forbid (principal, action, resource);'
        )
    with pytest.raises(PolicyError, match="templates"):
        engine("permit (principal == ?principal, action, resource);")


def test_no_permit_denies_and_unknown_methods_are_denied() -> None:
    decide = engine('@id("reads") permit (principal, action in Action::"read", resource);').decide
    assert decide(access_token(), facts("GET")).reason == ALLOW
    assert decide(access_token(), facts("POST")).reason == DENY
    assert decide(access_token(), facts("TRACE")).reason == DENY


def test_a_policy_that_errors_denies() -> None:
    """Cedar skips a policy whose evaluation fails; for a forbid that would admit the request."""
    text = (
        '@id("all") permit (principal, action, resource);\n'
        '@id("overflow") forbid (principal, action, resource)\n'
        "when { context.risk + 9223372036854775807 > 0 };\n"
    )
    decision = engine(text, risk=Fixed(5)).decide(access_token(), facts())
    assert (decision.allowed, decision.reason) == (False, ERROR)


def test_claims_become_attributes_and_tags() -> None:
    text = (
        '@id("p") permit (principal, action, resource) when {\n'
        '  principal.roles.contains("admin") && principal.groups.contains("ops") &&\n'
        '  principal.tenant == "acme" && principal.client_id == "client-1" &&\n'
        '  principal.hasTag("email") && principal.getTag("email") == "a@example.com" &&\n'
        '  principal.hasTag("level") && principal.getTag("level") == "3" &&\n'
        '  context.amr.contains("otp") && context.scopes.contains("read")\n};'
    )
    extra = {
        "roles": "admin viewer",
        "groups": ["ops"],
        "tenant": "acme",
        "email": "a@example.com",
        "level": 3,
        "amr": ["pwd", "otp"],
    }
    decide = engine(text).decide
    assert decide(access_token(extra=extra), facts()).allowed
    assert not decide(access_token(jti="2", extra={**extra, "groups": []}), facts()).allowed


def test_an_opaque_token_of_ours_has_the_amr_its_acr_implies() -> None:
    """Opaque tokens store no amr claim; the policy sees the methods behind the acr."""
    text = '@id("p") permit (principal, action, resource) when { context.amr.contains("otp") };'
    decide = engine(text).decide
    assert decide(access_token(acr="urn:tokenward:acr:mfa"), facts()).allowed
    assert not decide(access_token(jti="2", acr="urn:tokenward:acr:pwd"), facts()).allowed


class Fixed:
    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0

    def score(self, token: AccessToken, ip: str, route: str) -> int:
        self.calls += 1
        return self.value


def test_decisions_are_cached_only_when_no_policy_reads_volatile_context() -> None:
    clock = FrozenClock(NOW)
    stable = Fixed(0)
    decide = engine('@id("p") permit (principal, action, resource) when { context.hour >= 0 };',
                    clock, risk=stable).decide  # fmt: skip
    first = decide(access_token(), facts())
    assert decide(access_token(), facts()) is first  # the same (token, route, ..., hour)
    assert stable.calls == 1
    decide(access_token(), facts(ip="192.0.2.2"))  # another address: evaluated
    clock.advance(3600)  # another hour: evaluated
    decide(access_token(), facts())
    assert stable.calls == 3
    risky = Fixed(90)
    text = '@id("p") permit (principal, action, resource) when { context.risk < 50 };'
    decide = engine(text, clock, risk=risky).decide
    assert not decide(access_token(), facts()).allowed
    risky.value = 10  # the provider changed its mind: the next request sees it
    assert decide(access_token(), facts()).allowed
    assert risky.calls == 2


def test_auth_age_without_auth_time_is_never_fresh() -> None:
    text = (
        '@id("p") permit (principal, action, resource);\n'
        '@id("fresh") @step_up("max_age=300")\n'
        "forbid (principal, action, resource) unless { context.auth_age <= 300 };"
    )
    decide = engine(text).decide
    decision = decide(access_token(), facts())
    assert (decision.reason, decision.step_up) == (STEP_UP, StepUp(None, 300))
    assert decide(access_token(jti="2", auth_time=NOW - 30), facts()).allowed


def test_path_templates() -> None:
    templates = PathTemplates(["/tenants/{tenant}/orders/{id}", "/tenants/{tenant}"])
    assert templates.match("/tenants/a/orders/9") == (
        "/tenants/{tenant}/orders/{id}",
        {"tenant": "a", "id": "9"},
    )
    assert templates.match("/tenants/a") == ("/tenants/{tenant}", {"tenant": "a"})
    assert templates.match("/tenants/a/b/orders/9") == ("", {})
    assert templates.match("/tenants/" + "x" * 300) == ("", {})
    for bad in ("tenants/{t}", "/a/{t}/{t}", "/a/{t", "/a/{1t}"):
        with pytest.raises(TemplateError):
            PathTemplates([bad])


def test_country_lookup_seam(tmp_path: Path) -> None:
    assert iso_code({"country": {"iso_code": "de"}}) == "DE"
    assert iso_code({"registered_country": {"iso_code": "FR"}}) == "FR"
    assert iso_code({"country": {"iso_code": 7}}) is None
    assert iso_code(None) is None
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"country": {"iso_code": "DE"}})
    writer.to_db_file(str(tmp_path / "c.mmdb"))
    countries = MaxMindCountries(tmp_path / "c.mmdb")
    try:
        assert countries.country("192.0.2.200") == "DE"
        assert countries.country("198.51.100.1") is None
        assert countries.country("not an address") is None
        decide = engine(
            '@id("de") permit (principal, action, resource) when { context.country == "DE" };',
            countries=countries,
        ).decide
        assert decide(access_token(), facts(ip="192.0.2.9")).allowed
        assert not decide(access_token(), facts(ip="198.51.100.9")).allowed
    finally:
        countries.close()
