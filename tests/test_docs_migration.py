"""The migration page's examples run, and each section's blocks compute the same ``result``.

``docs/migration.rst`` puts code for another library (caption ``TorchOpt 0.7.3``, ``higher``
or ``torch.optim``) next to the same computation with torchopt_lite (caption
``torchopt_lite``) under a common heading. Each block runs in a fresh namespace and ends by
assigning ``result`` (a tensor or a tuple of tensors). A TorchOpt block also runs with
``torchopt`` mapped to ``torchopt_lite``: the drop-in claim, checked even where TorchOpt is not
installed. Blocks for a library that is not installed are skipped, naming it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest
import torch

import torchopt_lite

PAGE = Path(__file__).resolve().parent.parent / "docs" / "migration.rst"

OURS = "torchopt_lite"
TORCHOPT = "TorchOpt 0.7.3"
# caption -> the module its blocks import (None: only torch and torchopt_lite)
REQUIRES: dict[str, str | None] = {TORCHOPT: "torchopt", "higher": "higher", "torch.optim": None}
CAPTIONS = {*REQUIRES, OURS}

RTOL = 1e-10  # float64, same math: different operation orders only
# Sections whose other-library block may differ from ours by more, with the reason.
LOOSER_RTOL = {
    # TorchOpt 0.7.3 computes Adam's bias corrections 1 - beta**t as pow(beta, int64 count), a
    # float32 tensor whatever the parameters' dtype: 1 - 0.999 is off by 1.3e-5 relative in
    # float32, and the first updates by about half that. After the 5 steps of lr=0.1 the
    # parameters differ by 5e-6 to 8e-6 of their largest entry; 3e-5 leaves room, and
    # test_looser_tolerances_are_needed checks that rtol=1e-10 would fail.
    "Functional Adam": 3e-5,
    "The ``torch.optim``-style class": 3e-5,
}

_HEADING_CHARS = "=-~^\"'`#*+"
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+code-block::\s*(?P<lang>\S*)\s*$")
_OPTION = re.compile(r"^\s*:(?P<name>[\w-]+):\s*(?P<value>.*)$")


class Block(NamedTuple):
    """A ``.. code-block:: python`` of the page, with its caption and the heading above it."""

    section: str
    caption: str
    lineno: int  # 1-based line of the first code line
    code: str

    @property
    def id(self) -> str:
        return f"migration.rst:{self.lineno}[{self.caption}]"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_underline(line: str, title: str) -> bool:
    chars = set(line.rstrip())
    return (
        len(chars) == 1
        and chars <= set(_HEADING_CHARS)
        and len(line.rstrip()) >= len(title.rstrip())
        and bool(title.strip())
        and not title.startswith(" ")
    )


def parse_blocks(text: str) -> list[Block]:
    """Every python code block of ``text``, with its caption and innermost section title."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and _is_underline(lines[i + 1], lines[i]):
            section = lines[i].strip()
            i += 2
            continue
        match = _DIRECTIVE.match(lines[i])
        if not match or match["lang"] != "python":
            i += 1
            continue
        indent, options = len(match["indent"]), {}
        i += 1
        while i < len(lines) and lines[i].strip() and (option := _OPTION.match(lines[i])):
            options[option["name"]] = option["value"].strip()
            i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
            body.append((i + 1, lines[i]))
            i += 1
        while body and not body[0][1].strip():
            body.pop(0)
        margin = min(_indent(line) for _, line in body if line.strip())
        code = "\n".join(line[margin:] for _, line in body)
        blocks.append(Block(section, options.get("caption", ""), body[0][0], code))
    return blocks


BLOCKS = parse_blocks(PAGE.read_text(encoding="utf-8"))


def _sections() -> dict[str, list[Block]]:
    sections: dict[str, list[Block]] = {}
    for block in BLOCKS:
        sections.setdefault(block.section, []).append(block)
    return sections


def _missing(caption: str) -> str | None:
    """The module a block with this caption needs and that is not installed, if any."""
    module = REQUIRES.get(caption)
    if module is not None and importlib.util.find_spec(module) is None:
        return module
    return None


def _skip_if_missing(block: Block) -> None:
    missing = _missing(block.caption)
    if missing is not None:
        pytest.skip(f"{block.id} needs the package {missing!r}, which is not installed")


@contextmanager
def _torchopt_is_torchopt_lite() -> Iterator[None]:
    """``import torchopt`` (and ``torchopt.<sub>``) gives torchopt_lite inside the block."""
    saved = {k: m for k, m in sys.modules.items() if k == "torchopt" or k.startswith("torchopt.")}
    mapped: dict[str, ModuleType] = {"torchopt": torchopt_lite}
    for name, module in list(sys.modules.items()):
        if name.startswith("torchopt_lite.") and module is not None:
            mapped["torchopt." + name.removeprefix("torchopt_lite.")] = module
    for name in saved:
        del sys.modules[name]
    sys.modules.update(mapped)
    try:
        yield
    finally:
        for name in [k for k in sys.modules if k == "torchopt" or k.startswith("torchopt.")]:
            del sys.modules[name]
        sys.modules.update(saved)


@contextmanager
def _torchopt_warnings_ignored() -> Iterator[None]:
    """Ignore the warnings TorchOpt 0.7.3 triggers in torch 2.x (about them, not the page)."""
    with warnings.catch_warnings():
        # custom_root and solve_inv call functorch.vjp and functorch.jacfwd, deprecated since
        # torch 2.0; the first forward-mode call in a process makes torch script its jvp
        # decompositions, which warns that torch.jit.script is deprecated.
        warnings.filterwarnings("ignore", r"(?s).*`functorch\.\w+` is deprecated", FutureWarning)
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        yield


Result = tuple[torch.Tensor, ...]
_RESULTS: dict[tuple[int, bool], Result] = {}


def run_block(block: Block, *, as_torchopt_lite: bool = False) -> Result:
    """Run ``block`` in a fresh namespace and return its ``result`` as a tuple of tensors.

    The global RNG is seeded with a value of the block's own before it runs (and restored
    after), so a block that forgot to seed gives a result that its pair cannot reproduce.
    """
    key = (block.lineno, as_torchopt_lite)
    if key in _RESULTS:
        return _RESULTS[key]
    namespace: dict[str, object] = {"__name__": f"docs_migration_{block.lineno}"}
    code = compile(block.code, block.id, "exec")
    dtype = torch.get_default_dtype()
    context: AbstractContextManager[None]
    if as_torchopt_lite:
        context = _torchopt_is_torchopt_lite()
    elif block.caption == TORCHOPT:
        context = _torchopt_warnings_ignored()
    else:
        context = nullcontext()
    with torch.random.fork_rng(devices=[]), context:
        torch.manual_seed(zlib.crc32(block.code.encode()))
        exec(code, namespace)
    assert torch.get_default_dtype() == dtype, f"{block.id} changed the default dtype"
    assert "result" in namespace, f"{block.id} does not assign `result`"
    result = namespace["result"]
    leaves = (result,) if isinstance(result, torch.Tensor) else result
    assert isinstance(leaves, tuple), f"{block.id}: result must be a tensor or a tuple of tensors"
    assert leaves, f"{block.id}: result is empty"
    assert all(isinstance(t, torch.Tensor) for t in leaves), f"{block.id}: non-tensor in result"
    assert all(t.dtype == torch.float64 for t in leaves), f"{block.id}: result is not float64"
    _RESULTS[key] = tuple(t.detach().clone() for t in leaves)
    return _RESULTS[key]


def assert_results_close(actual: Result, expected: Result, *, rtol: float, where: str) -> None:
    """Same structure, and each tensor within ``rtol`` of its counterpart (scaled by its max)."""
    assert len(actual) == len(expected), f"{where}: {len(actual)} tensors vs {len(expected)}"
    for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
        # atol relative to the tensor's scale, so entries that cancel to ~0 compare sensibly.
        atol = rtol * float(e.abs().max()) if e.numel() else 0.0
        try:
            torch.testing.assert_close(a, e, rtol=rtol, atol=atol)
        except AssertionError as error:
            raise AssertionError(f"{where}[{k}]: {error}") from None


def _pairs() -> list[tuple[Block, Block]]:
    """``(other, ours)``: each block of another library with each torchopt_lite block beside it."""
    pairs = []
    for blocks in _sections().values():
        ours = [b for b in blocks if b.caption == OURS]
        pairs += [(other, mine) for other in blocks if other.caption != OURS for mine in ours]
    return pairs


def _torchopt_pairs() -> list[tuple[Block, Block]]:
    return [(other, ours) for other, ours in _pairs() if other.caption == TORCHOPT]


# -- the page --------------------------------------------------------------------------------


def test_page_is_parsed() -> None:
    captions = {b.caption for b in BLOCKS}
    assert captions == CAPTIONS, f"captions on the page: {captions}; expected {CAPTIONS}"
    unknown = [b.id for b in BLOCKS if b.caption not in CAPTIONS]
    assert not unknown, f"blocks without a known :caption: ({sorted(CAPTIONS)}): {unknown}"
    for section, blocks in _sections().items():
        kinds = {b.caption for b in blocks}
        assert OURS in kinds and len(kinds) >= 2, (
            f"section {section!r} must pair another library's block with a torchopt_lite one; "
            f"it has {sorted(kinds)}"
        )
    assert set(LOOSER_RTOL) <= set(_sections()), "a LOOSER_RTOL key names no section"


def test_parser_reads_captions_sections_and_bodies() -> None:
    text = (
        "Top\n===\n\nSub ``x``\n~~~~~~~~~\n\n"
        ".. code-block:: python\n   :caption: higher\n\n   a = 1\n\n   result = a\n\n"
        ".. code-block:: text\n\n   not python\n\n"
        "Other\n-----\n\n"
        ".. code-block:: python\n\n   b = 2\nprose\n"
    )
    first, second = parse_blocks(text)
    assert first == Block("Sub ``x``", "higher", 10, "a = 1\n\nresult = a\n")
    assert second == Block("Other", "", 23, "b = 2")


# -- the blocks run --------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_runs(block: Block) -> None:
    _skip_if_missing(block)
    result = run_block(block)
    assert all(torch.isfinite(t).all() for t in result), f"{block.id}: non-finite result"


@pytest.mark.parametrize(
    ("block", "ours"), _torchopt_pairs(), ids=lambda b: b.id if isinstance(b, Block) else ""
)
def test_torchopt_block_runs_on_torchopt_lite(block: Block, ours: Block) -> None:
    # No skip: the TorchOpt code itself runs whether or not TorchOpt is installed.
    result = run_block(block, as_torchopt_lite=True)
    assert_results_close(result, run_block(ours), rtol=RTOL, where=f"{block.id} as torchopt_lite")
    assert "torchopt" not in sys.modules or sys.modules["torchopt"] is not torchopt_lite


# -- each pair agrees ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "ours"), _pairs(), ids=lambda b: b.id if isinstance(b, Block) else ""
)
def test_pair_agrees(other: Block, ours: Block) -> None:
    _skip_if_missing(other)
    rtol = LOOSER_RTOL.get(other.section, RTOL)
    assert_results_close(run_block(other), run_block(ours), rtol=rtol, where=other.id)


def test_looser_tolerances_are_needed() -> None:
    # A section in LOOSER_RTOL that agrees to RTOL should not carry an exception.
    for section in LOOSER_RTOL:
        for other, ours in _pairs():
            if other.section != section or _missing(other.caption) is not None:
                continue
            with pytest.raises(AssertionError):
                assert_results_close(run_block(other), run_block(ours), rtol=RTOL, where=section)


# -- the checks can fail ---------------------------------------------------------------------


def test_comparison_rejects_a_perturbed_result() -> None:
    other, ours = next((o, m) for o, m in _pairs() if o.caption == "torch.optim")
    expected = run_block(ours)
    assert_results_close(run_block(other), expected, rtol=RTOL, where="reference")
    perturbed = (expected[0] * (1 + 1e-8), *expected[1:])
    with pytest.raises(AssertionError, match=r"\[0\]"):
        assert_results_close(perturbed, expected, rtol=RTOL, where="perturbed")
    with pytest.raises(AssertionError, match="tensors vs"):
        assert_results_close(expected[:-1], expected, rtol=RTOL, where="shorter")
    loose = max(LOOSER_RTOL.values())
    with pytest.raises(AssertionError):
        assert_results_close(
            (expected[0] * (1 + 10 * loose), *expected[1:]), expected, rtol=loose, where="loose"
        )


def test_a_block_that_does_not_seed_fails_its_pair() -> None:
    block = next(b for b in BLOCKS if b.caption == OURS and "torch.manual_seed(0)\n" in b.code)
    unseeded = block._replace(code=block.code.replace("torch.manual_seed(0)\n", ""), lineno=-1)
    other = unseeded._replace(code=unseeded.code + "\n# another block\n", lineno=-2)
    try:
        with pytest.raises(AssertionError):
            assert_results_close(run_block(unseeded), run_block(other), rtol=RTOL, where="unseeded")
    finally:
        _RESULTS.pop((-1, False), None)
        _RESULTS.pop((-2, False), None)


def test_missing_package_skips_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name in {"torchopt", "higher"} else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for caption in ("higher", TORCHOPT):
        block = next(b for b in BLOCKS if b.caption == caption)
        with pytest.raises(pytest.skip.Exception, match=repr(REQUIRES[caption])):
            _skip_if_missing(block)
    _skip_if_missing(next(b for b in BLOCKS if b.caption == OURS))  # ours never skips
