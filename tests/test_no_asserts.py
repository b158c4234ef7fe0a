"""No `assert` statement in src: `python -O` strips them, so a check written as one vanishes in
an optimised deployment. Ruff's S101 says so in `make lint`; CI runs the tests, so here too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenward"


def test_src_has_no_assert_statements() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert modules, f"no modules under {SRC}"
    found = [
        f"{path.relative_to(SRC.parent)}:{node.lineno}"
        for path in modules
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == [], "replace these with explicit errors:\n" + "\n".join(found)
