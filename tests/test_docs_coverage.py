"""The docs cover the public API of the foundation, and their examples run.

A name counts as documented when a page under ``docs/`` names it in a directive argument
(``.. autofunction:: torchopt_lite.adam``), in an ``autosummary`` list, in an inline literal
(````adam````) or in a cross-reference role (``:func:`~torchopt_lite.adam```). Prose and code
examples do not count: a name that only appears in an example is not documented.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

# The public modules of the foundation (issue 2); every name in their ``__all__`` needs a page.
FOUNDATION_MODULES = [
    "torchopt_lite",
    "torchopt_lite.base",
    "torchopt_lite.combine",
    "torchopt_lite.update",
    "torchopt_lite.transform",
    "torchopt_lite.alias",
    "torchopt_lite.alias.utils",
    "torchopt_lite.schedule",
    "torchopt_lite.clip",
    "torchopt_lite.hook",
    "torchopt_lite.optim",
    "torchopt_lite.pytree",
    "torchopt_lite.typing",
    "torchopt_lite.accelerated_op",
    "torchopt_lite.projections",
    # the differentiation modes, solvers, utilities and bridges
    "torchopt_lite.optim.meta",
    "torchopt_lite.diff.explicit",
    "torchopt_lite.diff.implicit",
    "torchopt_lite.diff.zero_order",
    "torchopt_lite.linalg",
    "torchopt_lite.linear_solve",
    "torchopt_lite.nn",
    "torchopt_lite.interop",
    "torchopt_lite.distributed",
]

# Pages whose ``.. code-block:: python`` examples are run by ``test_examples_run``.
EXAMPLE_PAGES = [
    "install",
    "quickstart",
    "optimizers",
    "catalog",
    "transforms",
    "differences",
    "interop",
]

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+(?P<kind>[\w:-]+)::\s*(?P<arg>.*)$")
_CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "testcode", "doctest", "math"}
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_ROLE = re.compile(r":[\w:]+:`(.+?)`", re.DOTALL)
_IDENT = re.compile(r"[A-Za-z_]\w*")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def documented_names(text: str) -> set[str]:
    """Identifiers that an rst text documents (see the module docstring)."""
    names: set[str] = set()
    kept: list[str] = []
    skip_deeper_than: int | None = None  # inside a code/math block or a literal block
    list_deeper_than: int | None = None  # inside an autosummary list
    for line in text.splitlines():
        stripped = line.strip()
        if skip_deeper_than is not None:
            if not stripped or _indent(line) > skip_deeper_than:
                continue
            skip_deeper_than = None
        if list_deeper_than is not None:
            if not stripped:
                continue
            if _indent(line) > list_deeper_than:
                if not stripped.startswith(":"):  # an entry, not an option
                    names.update(_IDENT.findall(stripped))
                continue
            list_deeper_than = None
        match = _DIRECTIVE.match(line)
        if match:
            kind, indent = match["kind"], len(match["indent"])
            if kind in _CODE_DIRECTIVES:
                skip_deeper_than = indent
                continue
            names.update(_IDENT.findall(match["arg"]))
            if kind == "autosummary":
                list_deeper_than = indent
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            skip_deeper_than = _indent(line)  # a paragraph ending in "::" opens a literal block
        kept.append(line)
    body = "\n".join(kept)
    for pattern in (_LITERAL, _ROLE):
        for span in pattern.findall(body):
            names.update(_IDENT.findall(span))
    return names


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)


@pytest.fixture(scope="module")
def docs_names() -> set[str]:
    names: set[str] = set()
    for page in _pages():
        names |= documented_names(page.read_text(encoding="utf-8"))
    return names


@pytest.mark.parametrize("module_name", FOUNDATION_MODULES)
def test_public_names_are_documented(module_name: str, docs_names: set[str]) -> None:
    module = importlib.import_module(module_name)
    public = list(module.__all__)
    assert public, f"{module_name} has an empty __all__"
    missing = [name for name in public if name not in docs_names]
    assert not missing, (
        f"{module_name}.__all__ has names that no page under docs/ documents: {missing}. "
        f"Add them to docs/api/{module_name.removeprefix('torchopt_lite.')}.rst "
        "(autofunction/autoclass, or an autosummary entry)."
    )


def test_parser_counts_documentation_not_examples() -> None:
    text = (
        "Prose about adam.\n\n"
        ".. autofunction:: torchopt_lite.sgd\n\n"
        "See ``chain(a, b)`` and :func:`~torchopt_lite.apply_updates`.\n\n"
        ".. autosummary::\n   :nosignatures:\n\n   torchopt_lite.adamw\n   radam\n\n"
        ".. code-block:: python\n\n   torchopt_lite.rmsprop(``adagrad``)\n\n"
        "A literal block::\n\n   ``adamax``\n\n"
        "Back to ``scale``.\n"
    )
    names = documented_names(text)
    assert {"sgd", "chain", "apply_updates", "adamw", "radam", "scale"} <= names
    assert not {"adam", "rmsprop", "adagrad", "adamax", "nosignatures"} & names


def _python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of each ``.. code-block:: python`` block."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if match and match["kind"] == "code-block" and match["arg"].strip() == "python":
            indent, start, body = len(match["indent"]), i + 1, []
            i += 1
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
                body.append(lines[i])
                i += 1
            margin = min(_indent(line) for line in body if line.strip())
            blocks.append((start, "\n".join(line[margin:] for line in body)))
            continue
        i += 1
    return blocks


EXAMPLES = [
    pytest.param(page, lineno, code, id=f"{page}.rst:{lineno}")
    for page in EXAMPLE_PAGES
    for lineno, code in _python_blocks((DOCS / f"{page}.rst").read_text(encoding="utf-8"))
]


def test_example_pages_have_examples() -> None:
    pages_with_examples = {param.values[0] for param in EXAMPLES}
    assert pages_with_examples == set(EXAMPLE_PAGES)


@pytest.mark.parametrize(("page", "lineno", "code"), EXAMPLES)
def test_examples_run(page: str, lineno: int, code: str) -> None:
    namespace = {"__name__": f"docs_{page}"}
    exec(compile(code, f"docs/{page}.rst:{lineno}", "exec"), namespace)
