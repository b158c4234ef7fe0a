"""Contextual authorization in Cedar: who (verified claims), what (method, route, path), and
the request's context (address, country, local time, authentication strength, sender
constraint, risk), decided by Cedar policies validated against one schema (docs/policies.md).

Framework-free and storage-free, so the gateway and the resource middleware share it; it sits
in `guard/` beside the validator whose output it judges.
"""

from tokenward.guard.authz.engine import Decision, PolicyEngine
from tokenward.guard.authz.facts import RequestFacts
from tokenward.guard.authz.source import PolicyError, PolicySet, load_policy_set

__all__ = [
    "Decision",
    "PolicyEngine",
    "PolicyError",
    "PolicySet",
    "RequestFacts",
    "load_policy_set",
]
