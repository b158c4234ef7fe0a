"""The import layers hold (contracts in pyproject.toml, [tool.importlinter]): CI runs the tests,
not `make lint`, so the layering is checked here too."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_architecture_page_draws_the_layers_the_contract_enforces() -> None:
    """docs/architecture.md is the page a contributor reads first: its picture must name every
    layer of the contract, in the contract's order, top to bottom."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        contracts = tomllib.load(file)["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    picture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").split("```text")[1]
    positions = []
    for layer in layers:
        # The picture writes "deploy/" and "services/" for packages; "a | b" and "a : b" as is.
        found = picture.find(f"{layer}/") if "|" not in layer and ":" not in layer else -1
        position = found if found >= 0 else picture.find(layer)
        assert position >= 0, f"docs/architecture.md does not draw the layer {layer!r}"
        positions.append(position)
    assert positions == sorted(positions), "the picture's layers are not in the contract's order"
