"""Small C loops, compiled on first use, for optimizer steps torch has no single-pass kernel for.

torch's fused optimizer kernels write parameters in place. The functional API instead returns
updates apart from the optimizer state, and the differentiable path must leave its inputs
untouched, so with stock kernels these steps take several multi-tensor passes (or copies before
an in-place kernel). ``kernels.c`` does each in one pass over memory (its comments have the math):

- SGD with momentum in place: writes the trace and the update together (4 memory streams where
  three multi-tensor passes move 7);
- Adam out of place: reads ``g, m, v`` and writes ``u, m', v'`` (6 streams where copies and an
  in-place kernel move 12);
- Adam's vector-Jacobian product when no graph is recorded (9 streams where ~15 multi-tensor
  passes move ~40).

The library is compiled once per machine with the system C compiler (``$CC``, else ``cc``) into
``$TORCHOPT_LITE_CACHE`` (default ``~/.cache/torchopt_lite``) and loaded with :mod:`ctypes`.
Without a compiler, or with ``TORCHOPT_LITE_NATIVE=0``, :func:`library` is ``None`` and callers
run torch's multi-tensor ops, with the same results up to rounding.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["adam_backward", "adam_forward", "library", "sgd_momentum_kernel"]

_LOG = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("kernels.c")
# Portable code (no -march=native: a shared cache may serve several CPUs) and no fused
# multiply-add contraction, so results do not depend on the compiler's choices.
_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-math-errno")
# Elements per worker thread at least: threads are started per call (~15 us each), so each gets
# ~100 us of work or more.
_GRAIN = 1 << 17
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_KERNELS = ("sgd_momentum", "adam_forward", "adam_backward")
# (pointer arrays, sizes, leaves, scalars, total elements, workers), as in kernels.c
_ARGTYPES = [
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int,
]  # fmt: skip

_lock = threading.Lock()
_state: dict[str, ctypes.CDLL | None] = {}


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` where they cannot be built or are switched off."""
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                _state["lib"] = _build_and_load()
    return _state["lib"]


def _cache_dirs() -> list[Path]:
    configured = os.environ.get("TORCHOPT_LITE_CACHE")
    if configured:
        return [Path(configured)]
    dirs = [Path(tempfile.gettempdir()) / "torchopt_lite"]
    try:
        home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home directory: the temporary directory only
        return dirs
    return [home_cache / "torchopt_lite", *dirs]


def _build_and_load() -> ctypes.CDLL | None:
    if os.environ.get("TORCHOPT_LITE_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        _LOG.info("no C compiler %r: the C loops are replaced by multi-tensor ops", compiler)
        return None
    for directory in _cache_dirs():
        target = directory / _library_name(compiler)
        try:
            if not target.exists():
                _compile(compiler, directory, target)
            lib = ctypes.CDLL(str(target))
            for kernel in _KERNELS:
                for suffix in _SUFFIX.values():
                    function = getattr(lib, f"{kernel}_{suffix}")
                    function.argtypes = _ARGTYPES
                    function.restype = ctypes.c_int
        except (OSError, AttributeError, subprocess.SubprocessError) as error:
            _LOG.info("C loops unavailable from %s: %s", directory, error)
            continue
        return lib
    return None


def _library_name(compiler: str) -> str:
    """A file name that changes with the source, the compiler, the flags and the machine."""
    parts = [_SOURCE.read_bytes(), compiler.encode(), " ".join(_FLAGS).encode()]
    key = hashlib.sha256(b"\0".join([*parts, platform.machine().encode()])).hexdigest()[:16]
    return f"kernels-{key}.so"


def _compile(compiler: str, directory: Path, target: Path) -> None:
    """Build into a private temporary name, then rename: concurrent builders agree atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *_FLAGS, str(_SOURCE), "-o", str(built), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise OSError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        os.replace(built, target)


class _Launch:
    """One prepared kernel call: the pointer arrays are read once, before anything is written."""

    def __init__(self, kernel: str, dtype: torch.dtype, arrays: list[array], sizes: array) -> None:
        self.function = getattr(library(), f"{kernel}_{_SUFFIX[dtype]}")
        self.arrays = arrays
        self.table = array("Q", [a.buffer_info()[0] for a in arrays])
        self.sizes = sizes
        self.total = sum(sizes)

    def __call__(self, *scalars: float) -> None:
        k = array("d", scalars)
        workers = max(1, min(torch.get_num_threads(), self.total // _GRAIN))
        status = self.function(
            self.table.buffer_info()[0], self.sizes.buffer_info()[0], len(self.sizes),
            k.buffer_info()[0], self.total, workers,
        )  # fmt: skip
        if status != 0:  # a mismatch between this file and kernels.c: a bug, not bad input
            raise RuntimeError(f"torchopt_lite native kernel {self.function.__name__}: {status}")


def _runnable(*groups: list[Tensor]) -> bool:
    """CPU float32/float64, contiguous, one dtype: what the C loops index as flat arrays.

    The callers have checked that the leaves of each group match in shape, dtype and device.
    """
    first = groups[0][0] if groups and groups[0] else None
    if library() is None or first is None or first.device.type != "cpu":
        return False
    if first.dtype not in _SUFFIX:
        return False
    return all(all(map(Tensor.is_contiguous, group)) for group in groups)


def _pointers(tensors: list[Tensor]) -> array:
    return array("Q", map(Tensor.data_ptr, tensors))


def _optional_pointers(tensors: Sequence[Tensor | None]) -> array:
    return array("Q", [0 if t is None else t.data_ptr() for t in tensors])


def sgd_momentum_kernel(
    grads: list[Tensor], traces: list[Tensor]
) -> Callable[[float, float, float, bool, bool], None] | None:
    """The one-pass momentum step over these leaves, or ``None`` where it does not apply.

    The caller checks that ``grads`` share one dtype and device, that ``traces[i]`` matches
    ``grads[i]`` in shape, dtype and device, and that no leaf is wrapped by a ``torch.func``
    transform or requires grad. The returned function takes ``(momentum, dampening, lr,
    nesterov, first)`` and overwrites ``grads`` with ``-lr * (nesterov ? g + momentum * b : b)``
    and ``traces`` with ``b``. Preparing it reads no values, so the caller may still transform
    ``grads`` in place before calling it.
    """
    if not _runnable(grads, traces):
        return None
    launch = _Launch(
        "sgd_momentum", grads[0].dtype, [_pointers(grads), _pointers(traces)],
        array("q", map(Tensor.numel, grads)),
    )  # fmt: skip

    def run(momentum: float, dampening: float, lr: float, nesterov: bool, first: bool) -> None:
        launch(momentum, dampening, lr, float(nesterov), float(first))

    return run


def adam_forward(
    g: list[Tensor],
    mu: list[Tensor],
    nu: list[Tensor],
    *,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
    a: float,
    c: float,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]] | None:
    """Adam's out-of-place step ``(g, m, v) -> (u, m', v')`` into fresh tensors, or ``None``.

    ``a = -lr / (1 - b1^t)`` and ``c = 1 / (1 - b2^t)``; the math is in ``kernels.c``. The
    inputs are only read. The caller checks that ``g``, ``mu`` and ``nu`` match leaf by leaf.
    """
    if not _runnable(g, mu, nu):
        return None
    u, mu_new, nu_new = ([torch.empty_like(x) for x in g] for _ in range(3))
    arrays = [_pointers(x) for x in (g, mu, nu, u, mu_new, nu_new)]
    launch = _Launch("adam_forward", g[0].dtype, arrays, array("q", map(Tensor.numel, g)))
    launch(1.0 - b1, b2, 1.0 - b2, c, eps_root, eps, a)
    return u, mu_new, nu_new


def adam_backward(
    u_bar: Sequence[Tensor | None],
    mu_bar: Sequence[Tensor | None],
    nu_bar: Sequence[Tensor | None],
    g: list[Tensor],
    mu_new: list[Tensor],
    nu_new: list[Tensor],
    *,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
    a: float,
    c: float,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]] | None:
    """The vector-Jacobian product of :func:`adam_forward` (no graph), or ``None``.

    Absent output gradients (``None``) count as zeros; strided ones are made dense. Returns
    ``(g_bar, m_bar, v_bar)`` in fresh tensors; the math is in ``kernels.c``.
    """
    if not _runnable(g, mu_new, nu_new):  # autograd matched the grads to the outputs already
        return None
    # Output gradients are often broadcast views (the gradient of a sum): one dense copy each.
    u_bar, mu_bar, nu_bar = (
        [x if x is None or x.is_contiguous() else x.contiguous() for x in bars]
        for bars in (u_bar, mu_bar, nu_bar)
    )
    outputs = ([torch.empty_like(x) for x in g] for _ in range(3))
    g_bar, m_bar, v_bar = outputs
    arrays = [
        *(_optional_pointers(x) for x in (u_bar, mu_bar, nu_bar)),
        *(_pointers(x) for x in (g, mu_new, nu_new, g_bar, m_bar, v_bar)),
    ]
    launch = _Launch("adam_backward", g[0].dtype, arrays, array("q", map(Tensor.numel, g)))
    launch(a, c, eps_root, eps, 1.0 - b1, 2.0 * (1.0 - b2), b1, b2)
    return g_bar, m_bar, v_bar
