"""A route's Cedar policies applied to a request the route's authorizer admitted.

Built per load (one `PolicyEngine` per route with policies, so a reload starts with empty
decision caches); at request time the decision becomes a pass, a 403 (`policy_denied`,
`policy_error`) or the RFC 9470 step-up challenge, and its determining policies go to audit.
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from tokenward.core.claims import AccessToken
from tokenward.core.errors import InsufficientUserAuthentication
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.model import GatewayConfig, RoutePolicies
from tokenward.gateway.policy import Denied
from tokenward.guard.authz.context import CountryLookup, RiskProvider
from tokenward.guard.authz.engine import ALLOW, STEP_UP, PolicyEngine
from tokenward.guard.authz.facts import RequestFacts

STEP_UP_DESCRIPTION = "a stronger or more recent authentication is required"
Engines = dict[str, tuple[PolicyEngine, RoutePolicies]]


def route_engines(
    config: GatewayConfig,
    countries: CountryLookup | None,
    risk: RiskProvider | None,
    clock: Callable[[], float],
) -> Engines:
    zone = ZoneInfo(config.policies.timezone)
    return {
        route.name: (
            PolicyEngine(
                route.policies.policies, zone=zone, countries=countries, risk=risk, clock=clock
            ),
            route.policies,
        )
        for route in config.routes
        if route.policies is not None
    }


def judge(
    engine: PolicyEngine,
    policies: RoutePolicies,
    token: AccessToken,
    method: str,
    route: str,
    path: str,
    record: AuditRecord,
) -> None:
    """Return when the policies allow; raise `Denied` (403) or the step-up challenge (401)."""
    template, params = policies.templates.match(path)
    action = policies.actions.get(method)
    facts = RequestFacts(method, route, path, record.ip, template, params, action)
    decision = engine.decide(token, facts)
    record.policies = decision.policies
    if decision.reason == ALLOW:
        return
    if decision.reason == STEP_UP and decision.step_up is not None:
        raise InsufficientUserAuthentication(
            STEP_UP_DESCRIPTION,
            acr_values=decision.step_up.acr_values,
            max_age=decision.step_up.max_age,
        )
    raise Denied(
        403,
        decision.reason,
        "the authorization policy does not allow this request",
        error="access_denied",
    )
