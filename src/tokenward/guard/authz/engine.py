"""Decide a request with Cedar: allow, deny (403), or ask for stronger authentication (401).

Fail closed: a request no permit allows is denied, and so is one where any policy errored
while evaluating (Cedar skips an erroring policy, which for a forbid would admit the request).
A deny whose every determining forbid carries `@step_up` becomes a step-up challenge
(RFC 9470); one plain forbid among them keeps it a deny.

Caching. A decision depends on the token (its claims never change), the route, method and
path, the client address (and so its country), the local hour and weekday, and, when a policy
reads them, the time since authentication and the risk score, which change from one request
to the next. Decisions are cached per (token, route, method, path, address, hour, weekday),
and only for policy sets that read neither `auth_age` nor `risk`; the principal's entity is
cached per token either way. A reload builds a new engine, so no decision outlives its policies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

import cedarpy
import orjson

from tokenward.core.claims import AccessToken
from tokenward.guard.authz.context import CountryLookup, RiskProvider, clamp_risk
from tokenward.guard.authz.facts import (
    RequestFacts,
    action_entities,
    context,
    local_time,
    principal_entity,
    resource_entity,
)
from tokenward.guard.authz.schema import METHODS
from tokenward.guard.authz.source import PolicySet
from tokenward.guard.authz.stepup import StepUp, merge

CACHE_SIZE = 10_000
ALLOW = "policy_allow"
DENY = "policy_denied"
STEP_UP = "step_up_required"
ERROR = "policy_error"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # a fixed code for audit and metrics: ALLOW, DENY, STEP_UP, ERROR
    policies: tuple[str, ...]  # the determining policies' ids (`@id`, else file:line)
    step_up: StepUp | None = None


_UNKNOWN_METHOD = Decision(False, DENY, ())


class PolicyEngine:
    def __init__(
        self,
        policies: PolicySet,
        *,
        zone: tzinfo = UTC,
        countries: CountryLookup | None = None,
        risk: RiskProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = policies
        self._zone = zone
        self._countries = countries
        self._risk = risk
        self._clock = clock
        self._cacheable = not policies.volatile
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._principals: dict[tuple[str, str, int, str], cedarpy.Entities] = {}
        self._pairs: dict[tuple[str, str, int, str, str], cedarpy.Entities] = {}
        self._base = cedarpy.Entities.from_json_str(
            orjson.dumps(action_entities(policies.actions)).decode()
        )
        self._named = {name for name, _ in policies.actions}
        self._second = -1
        self._local = local_time(0, zone)

    def decide(self, token: AccessToken, facts: RequestFacts) -> Decision:
        if facts.method not in METHODS:
            return _UNKNOWN_METHOD  # the schema knows no such action: nothing can permit it
        now = self._clock()
        second = int(now)
        if second != self._second:  # the local time only changes once a second for us
            self._second, self._local = second, local_time(second, self._zone)
        local = self._local
        key: tuple[Any, ...] | None = None
        if self._cacheable:
            key = (
                token.jti,
                token.sub,
                token.iat,
                token.client_id,
                facts.route,
                facts.method,
                facts.path,
                facts.ip,
                local.hour,
                local.isoweekday(),
            )
            cached = self._decisions.get(key)
            if cached is not None:
                return cached
        decision = self._evaluate(token, facts, local, now)
        if key is not None:
            if len(self._decisions) >= CACHE_SIZE:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _evaluate(
        self, token: AccessToken, facts: RequestFacts, local: Any, now: float
    ) -> Decision:
        country = self._countries.country(facts.ip) if self._countries is not None else None
        risk = clamp_risk(self._risk.score(token, facts.ip, facts.route)) if self._risk else 0
        request = {
            "principal": {"type": "Subject", "id": token.sub},
            "action": {"type": "Action", "id": self._action(facts)},
            "resource": {"type": "Route", "id": facts.route},
            # A string: cedarpy would encode a dict with the slower json module.
            "context": orjson.dumps(context(token, facts, local, now, country, risk)).decode(),
        }
        entities = self._entities(token, facts)
        try:
            result = cedarpy.is_authorized(request, self.policies.cedar, entities)
        except ValueError:  # a request Cedar cannot take (it never should): refuse, never 500
            return Decision(False, ERROR, ())
        diagnostics = result.diagnostics
        labels = tuple(self.policies.label(found) for found in diagnostics.reasons)
        if diagnostics.errors:
            return Decision(False, ERROR, labels)
        if result.allowed:
            return Decision(True, ALLOW, labels)
        step_ups = self.policies.step_ups
        numbers = [int(found.removeprefix("policy")) for found in diagnostics.reasons]
        if numbers and all(number in step_ups for number in numbers):
            return Decision(False, STEP_UP, labels, merge([step_ups[n] for n in numbers]))
        return Decision(False, DENY, labels)

    def _action(self, facts: RequestFacts) -> str:
        action = facts.action
        return action if action is not None and action in self._named else facts.method

    def _entities(self, token: AccessToken, facts: RequestFacts) -> cedarpy.Entities:
        """The principal and the resource; the pair is cached, as the same token asks for the
        same paths again."""
        resource = orjson.dumps([resource_entity(facts)]).decode()
        key = (token.jti, token.sub, token.iat, token.client_id, resource)
        found = self._pairs.get(key)
        if found is None:
            if len(self._pairs) >= CACHE_SIZE:
                self._pairs.clear()
            found = self._pairs[key] = self._principal(token).with_added_json_str(resource)
        return found

    def _principal(self, token: AccessToken) -> cedarpy.Entities:
        key = (token.jti, token.sub, token.iat, token.client_id)
        found = self._principals.get(key)
        if found is None:
            if len(self._principals) >= CACHE_SIZE:
                self._principals.clear()
            found = self._base.with_added_json_str(orjson.dumps([principal_entity(token)]).decode())
            self._principals[key] = found
        return found
