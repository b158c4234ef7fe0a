"""Policy files in, one validated Cedar policy set out; every error names its file and line.

cedarpy reports parse and validation errors without positions, so each file is cut into its
statements here (a small scanner that knows strings and comments) and an error is put on the
line where its policy starts: parse errors by parsing the statements one by one, validation
errors by the positional policy id Cedar gives them (`policy<N>` is the N-th statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cedarpy
import orjson

from tokenward.guard.authz.schema import Actions, schema_for
from tokenward.guard.authz.stepup import StepUp, parse_step_up

MAX_FILE_BYTES = 1 << 20
MAX_POLICIES = 1000
# Context fields that change from one second (or request) to the next: a decision that reads
# them is never cached (engine.py).
VOLATILE_CONTEXT = ("auth_age", "risk")


class PolicyError(ValueError):
    """Policies that cannot be loaded; `errors` are `file:line: message` strings."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    name: str  # shown in errors and in default policy ids, e.g. `policies/admin.cedar`
    text: str


@dataclass(frozen=True, eq=False)
class PolicySet:
    """A validated set: Cedar's handle, and per positional id its label and step-up."""

    cedar: cedarpy.PolicySet
    labels: tuple[str, ...]  # `@id` when given, else `file:line`
    step_ups: dict[int, StepUp]
    volatile: bool  # some policy reads a context field that changes every second
    files: tuple[str, ...]
    actions: Actions = ()  # the route's named actions, (name, method)

    def label(self, policy_id: str) -> str:
        return self.labels[int(policy_id.removeprefix("policy"))]


def statements(text: str) -> list[tuple[int, str]]:
    """Each top-level `...;` statement with the line it starts on (1-based)."""
    found: list[tuple[int, str]] = []
    start: int | None = None
    depth = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == "/" and text.startswith("//", index):
            end = text.find("\n", index)
            index = length if end < 0 else end
            continue
        if start is None and not char.isspace():
            start = index
        if char == '"':
            index = _string_end(text, index)
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == ";" and depth <= 0 and start is not None:
            found.append((text.count("\n", 0, start) + 1, text[start : index + 1]))
            start, depth = None, 0
        index += 1
    if start is not None:
        found.append((text.count("\n", 0, start) + 1, text[start:]))
    return found


def _string_end(text: str, index: int) -> int:
    index += 1
    while index < len(text) and text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return index


Described = list[tuple[str, StepUp | None]]


def _check_file(policy_file: PolicyFile, actions: Actions) -> tuple[list[str], Described]:
    """(errors, per statement: its label and step-up)."""
    name, text = policy_file.name, policy_file.text
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        return [f"{name}: larger than {MAX_FILE_BYTES} bytes"], []
    parts = statements(text)
    if len(parts) > MAX_POLICIES:
        return [f"{name}: more than {MAX_POLICIES} policies"], []
    errors = _parse_errors(name, parts)
    if errors:
        return errors, []
    est = orjson.loads(cedarpy.policies_to_json_str(text))
    if est.get("templates"):
        return [f"{name}: templates (?principal, ?resource) are not supported"], []
    policies = est["staticPolicies"]
    if len(policies) != len(parts):  # the scanner and Cedar disagree: say so, never guess
        return [f"{name}: could not locate the policies' lines"], []
    described = _annotations(name, parts, policies, errors)
    errors.extend(_validation_errors(name, parts, text, actions))
    return errors, described


def _parse_errors(name: str, parts: list[tuple[int, str]]) -> list[str]:
    errors = []
    for line, statement in parts:
        try:
            cedarpy.PolicySet.from_str(statement)
        except ValueError as exc:
            errors.append(f"{name}:{line}: {exc}")
    return errors


def _annotations(
    name: str, parts: list[tuple[int, str]], policies: dict[str, Any], errors: list[str]
) -> Described:
    described: Described = []
    for number, (line, _) in enumerate(parts):
        policy = policies[f"policy{number}"]
        annotations = policy.get("annotations", {})
        step_up = None
        if "step_up" in annotations:
            if policy["effect"] != "forbid":
                errors.append(f"{name}:{line}: @step_up belongs on a forbid policy")
            else:
                try:
                    step_up = parse_step_up(annotations["step_up"])
                except ValueError as exc:
                    errors.append(f"{name}:{line}: {exc}")
        described.append((annotations.get("id") or f"{name}:{line}", step_up))
    return described


def _validation_errors(
    name: str, parts: list[tuple[int, str]], text: str, actions: Actions
) -> list[str]:
    errors = []
    reported: set[str] = set()
    for error in cedarpy.validate_policies(text, schema_for(actions)).errors:
        if error.policy_id in reported:
            continue  # the same mistake once per action it applies to: say it once
        reported.add(error.policy_id)
        where = parts[int(error.policy_id.removeprefix("policy"))][0] if error.policy_id else 0
        errors.append(f"{name}:{where}: {error.error}")
    return errors


def load_policy_set(files: Sequence[PolicyFile], actions: Actions = ()) -> PolicySet:
    """Parse, validate against the schema (with `actions` from `schema.named_actions`), and
    assemble; PolicyError lists every problem."""
    errors: list[str] = []
    described: Described = []
    for policy_file in files:
        file_errors, file_described = _check_file(policy_file, actions)
        errors.extend(file_errors)
        described.extend(file_described)
    seen: set[str] = set()
    for label, _ in described:
        if label in seen:
            errors.append(f"@id({label!r}) is used by two policies")
        seen.add(label)
    if errors:
        raise PolicyError(errors)
    text = "\n".join(policy_file.text for policy_file in files)
    est = cedarpy.policies_to_json_str(text) if text.strip() else "{}"
    return PolicySet(
        cedar=cedarpy.PolicySet.from_str(text),
        labels=tuple(label for label, _ in described),
        step_ups={n: step_up for n, (_, step_up) in enumerate(described) if step_up is not None},
        volatile=any(f'"attr":"{name}"' in est for name in VOLATILE_CONTEXT),
        files=tuple(policy_file.name for policy_file in files),
        actions=actions,
    )
