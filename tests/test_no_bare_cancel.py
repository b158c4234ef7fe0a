"""Background tasks are stopped with `core.lifecycle.cancel_and_wait`, not `task.cancel()`
followed by an await: one cancellation can be swallowed (docs/architecture.md), and a node
whose poll loop swallowed it never exits on SIGTERM."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenward"


def _cancelled_then_awaited(tree: ast.AST) -> list[int]:
    """Lines where a function cancels `x` and later awaits `x` itself."""
    lines = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        cancelled: dict[str, int] = {}
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "cancel"
                and not node.args
            ):
                cancelled[ast.unparse(node.func.value)] = node.lineno
        for node in ast.walk(function):
            if isinstance(node, ast.Await) and ast.unparse(node.value) in cancelled:
                lines.append(node.lineno)
    return lines


def test_no_task_is_cancelled_once_and_awaited() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert modules, f"no modules under {SRC}"
    found = [
        f"{path.relative_to(SRC.parent)}:{line}"
        for path in modules
        for line in _cancelled_then_awaited(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], "stop these with core.lifecycle.cancel_and_wait:\n" + "\n".join(found)


def test_the_check_finds_the_pattern() -> None:
    sample = "async def stop(self):\n    self._task.cancel()\n    await self._task\n"
    assert _cancelled_then_awaited(ast.parse(sample)) == [3]
