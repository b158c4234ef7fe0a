"""The `@step_up` annotation on a forbid policy (RFC 9470): what authentication would lift it.

Syntax: `@step_up("acr=<value>[ <value>...];max_age=<seconds>")`, either part optional but not
both. `acr` is the space-separated list sent as `acr_values`; `max_age` the longest time, in
seconds, since the user authenticated. The policy's own condition says when the authentication
is good enough (usually `context.acr` and `context.auth_age`): the annotation only tells the
client what to ask for when the policy forbids.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ACR_LENGTH = 256
MAX_MAX_AGE = 10 * 365 * 86400


@dataclass(frozen=True, slots=True)
class StepUp:
    acr_values: str | None
    max_age: int | None


def parse_step_up(text: str) -> StepUp:
    """The annotation's value as a StepUp; ValueError says what is wrong with it."""
    found: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or name not in ("acr", "max_age") or not value.strip():
            raise ValueError(f"@step_up: expected acr=... and/or max_age=..., got {part!r}")
        if name in found:
            raise ValueError(f"@step_up: {name} given twice")
        found[name] = value.strip()
    acr = " ".join(found["acr"].split()) if "acr" in found else None
    if acr is not None and (len(acr) > MAX_ACR_LENGTH or not acr.isprintable()):
        raise ValueError("@step_up: acr must be printable and at most 256 characters")
    max_age = None
    if "max_age" in found:
        if not found["max_age"].isdigit() or int(found["max_age"]) > MAX_MAX_AGE:
            raise ValueError("@step_up: max_age must be a whole number of seconds")
        max_age = int(found["max_age"])
    return StepUp(acr, max_age)


def merge(step_ups: list[StepUp]) -> StepUp:
    """Several step-up policies forbid at once: ask for every acr named, and the strictest
    freshness."""
    acrs: list[str] = []
    for item in step_ups:
        for value in (item.acr_values or "").split():
            if value not in acrs:
                acrs.append(value)
    ages = [item.max_age for item in step_ups if item.max_age is not None]
    return StepUp(" ".join(acrs) or None, min(ages) if ages else None)
