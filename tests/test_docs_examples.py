"""Every ``.. code-block:: python`` in docs/*.rst runs (migration.rst has its own comparisons)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
OWN_TEST = {"migration.rst"}  # tests/test_docs_migration.py runs and compares its blocks


def _blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each python code block: the indented lines after the directive."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent = len(match.group(1))
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].strip().startswith(":")):
            j += 1  # the directive's options and the blank line
        body = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            body.append(lines[j])
            j += 1
        found.append((i + 1, textwrap.dedent("\n".join(body))))
        i = j
    return found


CASES = [
    pytest.param(code, id=f"{path.name}:{line}")
    for path in sorted(DOCS.glob("*.rst"))
    if path.name not in OWN_TEST
    for line, code in _blocks(path)
]


def test_the_docs_have_code_blocks() -> None:
    assert len(CASES) >= 20  # the parser finds them (a broken parser must not pass silently)


@pytest.mark.parametrize("code", CASES)
def test_docs_code_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks that save files write here
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
