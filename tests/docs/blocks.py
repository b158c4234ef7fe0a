"""The fenced code blocks of README.md and docs/*.md, with the directive written above each.

A directive is an HTML comment on the line just before the fence (invisible when rendered):

    <!-- docs-test: covered-by tests/test_readme.py::test_protect_an_api_example -->
    <!-- docs-test: not-run: <why> -->

`covered-by` names the test that runs the block (it must exist); `not-run` is allowed only
for the commands listed in NOT_RUN (the suite cannot run the command that runs the suite).
Blocks of language `text` are output samples and pictures; every other block is executed
(`cedar` policies by the tests that name them: each must say `covered-by`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
EXECUTED = frozenset({"python", "sh", "yaml", "json", "nginx", "cedar"})
LANGUAGES = EXECUTED | {"text"}
# Blocks the suite cannot run, by their exact first line, and why.
NOT_RUN = {
    "make test   # creates .venv if needed, runs the whole suite in parallel": (
        "the suite is what runs these blocks"
    ),
}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    directive: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def covered_by(self) -> str | None:
        if self.directive and self.directive.startswith("covered-by "):
            return self.directive.removeprefix("covered-by ").strip()
        return None


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].strip() == "```"), len(lines)
        )
        directive = None
        if start > 0 and (match := DIRECTIVE.match(lines[start - 1])):
            directive = match.group("body")
        body = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Block(path, start + 1, fence.group("lang"), body, directive))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path)]


def runnable(path: Path, lang: str) -> list[Block]:
    """The blocks of one document in one language that the generic runners execute."""
    return [
        block
        for block in blocks(path)
        if block.lang == lang and block.covered_by is None and not is_not_run(block)
    ]


def is_not_run(block: Block) -> bool:
    return block.directive is not None and block.directive.startswith("not-run")


def first_line(block: Block) -> str:
    return block.text.splitlines()[0] if block.text.strip() else ""


def documented(page: str, lang: str, starting: str) -> Block:
    """The block of `page` in `lang` whose text starts with `starting`: for the tests that run
    a documented block themselves (`covered-by`), so they run what the page shows."""
    found = [
        block
        for block in blocks(ROOT / page)
        if block.lang == lang and block.text.lstrip().startswith(starting)
    ]
    if len(found) != 1:
        raise LookupError(f"{page}: {len(found)} {lang} blocks start with {starting!r}")
    return found[0]


def documented_command(page: str, starting: str) -> list[str]:
    """The argv of the one sh command of `page` starting with `starting` (continuations
    joined), without its program name."""
    for block in blocks(ROOT / page):
        if block.lang != "sh":
            continue
        for line in re.sub(r"\\\n\s*", " ", block.text).splitlines():
            if line.strip().startswith(starting):
                return shlex.split(line)[1:]
    raise LookupError(f"{page}: no sh command starts with {starting!r}")
