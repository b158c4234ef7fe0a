"""Cedar policies for a service that protects itself (docs/policies.md): the same engine as the
gateway's (`tokenward.guard.authz`), applied after the token is verified.

`RoutePolicy` names the service's route for the policies (`resource.name`) and its path
templates (`/tenants/{tenant}/orders/{id}`: `resource.getTag("tenant")`). `BearerAuthMiddleware`
takes one (`policy=`); FastAPI apps can use `tokenward.resource.fastapi.require_policy` per route.
A deny answers 403 `access_denied`; a `@step_up` forbid answers the RFC 9470 401 challenge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tokenward.core.claims import AccessToken
from tokenward.core.errors import InsufficientUserAuthentication
from tokenward.guard.authz.engine import ALLOW, STEP_UP, Decision, PolicyEngine
from tokenward.guard.authz.facts import UNKNOWN_IP, RequestFacts
from tokenward.guard.authz.templates import PathTemplates

STEP_UP_DESCRIPTION = "a stronger or more recent authentication is required"
DENIED_DESCRIPTION = "the authorization policy does not allow this request"
DENIED_BODY = json.dumps(
    {"error": "access_denied", "error_description": DENIED_DESCRIPTION}
).encode()


class PolicyDenied(Exception):
    """The policies deny the request (403); `decision` says which policies decided."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(DENIED_DESCRIPTION)
        self.decision = decision


@dataclass(frozen=True)
class RoutePolicy:
    engine: PolicyEngine
    route: str = "api"  # `resource.name` in the policies
    templates: PathTemplates = field(default_factory=lambda: PathTemplates(()))
    # method -> the route's Cedar action name; the engine's policy set must have been loaded
    # with the same names (`load_policy_set(files, named_actions(...))`).
    actions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        engine: PolicyEngine,
        route: str = "api",
        templates: Sequence[str] = (),
        actions: Mapping[str, str] | None = None,
    ) -> RoutePolicy:
        return cls(engine, route, PathTemplates(templates), dict(actions or {}))

    def enforce(self, token: AccessToken, method: str, path: str, ip: str | None) -> Decision:
        """The decision when it allows; raises `PolicyDenied` or the step-up BearerError."""
        template, params = self.templates.match(path)
        facts = RequestFacts(
            method, self.route, path, ip or UNKNOWN_IP, template, params, self.actions.get(method)
        )
        decision = self.engine.decide(token, facts)
        if decision.reason == ALLOW:
            return decision
        if decision.reason == STEP_UP and decision.step_up is not None:
            raise InsufficientUserAuthentication(
                STEP_UP_DESCRIPTION,
                acr_values=decision.step_up.acr_values,
                max_age=decision.step_up.max_age,
            )
        raise PolicyDenied(decision)
