"""A small C kernel, compiled on first use, for the one step torch has no single-pass kernel for.

torch's fused optimizer kernels write parameters. The functional API returns an update apart
from the optimizer state, and for SGD with momentum no stock kernel writes the trace and a
separate update in one pass: three multi-tensor passes move 7 memory streams where one pass moves
4. ``momentum.c`` is that pass (its header has the math).

It is compiled once per machine with the system C compiler (``$CC``, else ``cc``) into
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
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["library", "sgd_momentum_kernel"]

_LOG = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("momentum.c")
# Portable code (no -march=native: a shared cache may serve several CPUs) and no fused
# multiply-add contraction, so results do not depend on the compiler's choices.
_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread", "-ffp-contract=off")
_GRAIN = 32768  # elements per worker thread at least (torch's parallel_for grain size)
_ENTRY = {torch.float32: "sgd_momentum_f32", torch.float64: "sgd_momentum_f64"}
_ARGTYPES = [
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
    ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_int, ctypes.c_int,
    ctypes.c_int64, ctypes.c_int,
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
    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [home_cache / "torchopt_lite", Path(tempfile.gettempdir()) / "torchopt_lite"]


def _build_and_load() -> ctypes.CDLL | None:
    if os.environ.get("TORCHOPT_LITE_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        _LOG.info("no C compiler %r: SGD momentum uses torch's multi-tensor ops", compiler)
        return None
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [source, compiler.encode(), " ".join(_FLAGS).encode(), platform.machine().encode()]
        )
    ).hexdigest()[:16]
    for directory in _cache_dirs():
        target = directory / f"momentum-{key}.so"
        try:
            if not target.exists():
                _compile(compiler, directory, target)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as error:
            _LOG.info("native SGD momentum kernel unavailable in %s: %s", directory, error)
            continue
        for entry in _ENTRY.values():
            function = getattr(lib, entry)
            function.argtypes = _ARGTYPES
            function.restype = ctypes.c_int
        return lib
    return None


def _compile(compiler: str, directory: Path, target: Path) -> None:
    """Build into a private temporary name, then rename: concurrent builders agree atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *_FLAGS, str(_SOURCE), "-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise OSError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        os.replace(built, target)


def sgd_momentum_kernel(
    grads: list[Tensor], traces: list[Tensor]
) -> Callable[[float, float, float, bool, bool], None] | None:
    """The one-pass momentum step over these leaves, or ``None`` where it does not apply.

    Applies to contiguous CPU float32/float64 leaves of one dtype, ``grads[i]`` shaped like
    ``traces[i]`` (the caller checks dtype, shape and device agreement and that no leaf is
    wrapped by a ``torch.func`` transform or requires grad). The returned function takes
    ``(momentum, dampening, lr, nesterov, first)`` and overwrites ``grads`` with the update
    ``-lr * (nesterov ? g + momentum * b : b)`` and ``traces`` with ``b``. Preparing it reads no
    values, so the caller may still transform ``grads`` in place before calling it.
    """
    lib = library()
    entry = _ENTRY.get(grads[0].dtype) if grads else None
    if lib is None or entry is None or grads[0].device.type != "cpu":
        return None
    if not all(map(Tensor.is_contiguous, grads)) or not all(map(Tensor.is_contiguous, traces)):
        return None
    sizes = array("q", map(Tensor.numel, grads))
    grad_ptrs = array("Q", map(Tensor.data_ptr, grads))
    trace_ptrs = array("Q", map(Tensor.data_ptr, traces))
    total = sum(sizes)
    function = getattr(lib, entry)

    def run(momentum: float, dampening: float, lr: float, nesterov: bool, first: bool) -> None:
        workers = max(1, min(torch.get_num_threads(), total // _GRAIN))
        function(
            grad_ptrs.buffer_info()[0], trace_ptrs.buffer_info()[0], sizes.buffer_info()[0],
            len(sizes), momentum, dampening, lr, int(nesterov), int(first), total, workers,
        )  # fmt: skip

    return run
