"""The C momentum kernel of ``torchopt_lite._native``: its math, its threads, its fallbacks."""

from __future__ import annotations

import os
import shutil
from unittest import mock

import optree
import pytest
import torch

import torchopt_lite
from torchopt_lite import _native
from torchopt_lite.alias import _fused
from torchopt_lite.base import ChainedGradientTransformation

HAS_COMPILER = shutil.which(os.environ.get("CC") or "cc") is not None
needs_kernel = pytest.mark.skipif(
    _native.library() is None,
    reason="no C compiler here (or TORCHOPT_LITE_NATIVE=0): the kernel cannot be built",
)

CONFIGS = {
    "heavy-ball": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "dampening": {"momentum": 0.8, "dampening": 0.3},
    "decay+maximize": {"momentum": 0.5, "weight_decay": 0.1, "maximize": True},
    "nesterov+decay": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
}


def _params(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    # sizes that do not divide evenly among workers, and one leaf large enough to be split
    shapes = {"w": (7, 5), "b": (3,), "big": (70_001,), "empty": (0,), "m": (4, 4, 4)}
    return {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}


def _grads(params: dict[str, torch.Tensor], steps: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
        for _ in range(steps)
    ]


def _run(opt: object, params: dict, grads: list[dict]) -> tuple[dict, object]:
    p = {k: v.clone() for k, v in params.items()}
    state = opt.init(p)  # type: ignore[attr-defined]
    for g in grads:
        g = {k: v.clone() for k, v in g.items()}
        u, state = opt.update(g, state, params=p, inplace=True)  # type: ignore[attr-defined]
        p = torchopt_lite.apply_updates(p, u, inplace=True)
    return p, state


def _assert_same_run(a: tuple, b: tuple, dtype: torch.dtype) -> None:
    tol = {"rtol": 1e-13, "atol": 1e-15} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    (p1, s1), (p2, s2) = a, b
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], **tol)
    leaves1, spec1 = optree.tree_flatten(s1)
    leaves2, spec2 = optree.tree_flatten(s2)
    assert spec1 == spec2
    for x, y in zip(leaves1, leaves2, strict=True):
        torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "fallback"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_sgd_step_equals_the_transforms(config: str, dtype: torch.dtype, native: bool) -> None:
    """sgd's in-place step, through the kernel or its fallback = the transforms one by one."""
    if native and _native.library() is None:
        pytest.skip("no C compiler here (or TORCHOPT_LITE_NATIVE=0): the kernel cannot be built")
    fused = torchopt_lite.sgd(0.05, **CONFIGS[config])
    assert isinstance(fused, ChainedGradientTransformation)
    unfused = ChainedGradientTransformation(*fused.transformations)
    params = _params(dtype)
    grads = _grads(params, 7)
    prepared = []

    def spy(*args: object) -> object:
        prepared.append(_native.sgd_momentum_kernel(*args))  # type: ignore[arg-type]
        return prepared[-1]

    with (
        mock.patch.object(_fused, "sgd_momentum_kernel", spy),
        mock.patch.dict(_native._state, {} if native else {"lib": None}),
    ):
        fused_run = _run(fused, params, grads)
    assert len(prepared) == len(grads)
    assert all((k is not None) == native for k in prepared)
    _assert_same_run(fused_run, _run(unfused, params, grads), dtype)


@needs_kernel
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("first", [False, True])
def test_kernel_formula_and_worker_split(
    first: bool, nesterov: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's output is the documented formula, bit for bit the same for 1 or 4 workers."""
    monkeypatch.setattr(_native, "_GRAIN", 1000)  # split even this small step across workers
    gen = torch.Generator().manual_seed(2)
    sizes = [1, 40_000, 3, 0, 100_003, 17]
    grads = [torch.randn(n, generator=gen) for n in sizes]
    traces = [torch.randn(n, generator=gen) for n in sizes]
    mu, tau, lr = 0.9, 0.25 if not nesterov else 0.0, 0.1
    trace_ref = [
        g.clone() if first else mu * b + (1 - tau) * g for g, b in zip(grads, traces, strict=True)
    ]
    update_ref = [
        -lr * (g + mu * t if nesterov else t) for g, t in zip(grads, trace_ref, strict=True)
    ]
    outputs = []
    threads = torch.get_num_threads()
    try:
        for workers in (1, 4):
            torch.set_num_threads(workers)
            g, b = [x.clone() for x in grads], [x.clone() for x in traces]
            kernel = _native.sgd_momentum_kernel(g, b)
            assert kernel is not None
            kernel(mu, tau, lr, nesterov, first)
            outputs.append((g, b))
    finally:
        torch.set_num_threads(threads)
    (g1, b1), (g4, b4) = outputs
    for x, y in zip(g1 + b1, g4 + b4, strict=True):
        assert torch.equal(x, y)
    for got, want in zip(outputs[0][0] + outputs[0][1], update_ref + trace_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@needs_kernel
def test_kernel_declines_what_it_cannot_run() -> None:
    """Other dtypes, strided leaves and non-CPU devices get no kernel (the caller falls back)."""
    half = [torch.ones(4, dtype=torch.float16)]
    assert _native.sgd_momentum_kernel(half, [torch.zeros(4, dtype=torch.float16)]) is None
    strided = [torch.ones(4, 4).t()]
    assert _native.sgd_momentum_kernel(strided, [torch.zeros(4, 4)]) is None
    meta = [torch.ones(4, device="meta")]
    assert _native.sgd_momentum_kernel(meta, [torch.zeros(4, device="meta")]) is None
    assert _native.sgd_momentum_kernel([], []) is None


def test_strided_gradients_fall_back_with_the_same_result() -> None:
    """A transposed (non-contiguous) gradient takes the multi-tensor passes, same numbers."""
    params = {"w": torch.randn(6, 4, dtype=torch.float64)}
    grads = [{"w": torch.randn(4, 6, dtype=torch.float64).t()} for _ in range(4)]
    fused = torchopt_lite.sgd(0.1, momentum=0.9)
    assert isinstance(fused, ChainedGradientTransformation)
    unfused = ChainedGradientTransformation(*fused.transformations)
    _assert_same_run(_run(fused, params, grads), _run(unfused, params, grads), torch.float64)


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHOPT_LITE_NATIVE", "0")
    assert _native._build_and_load() is None


def test_no_compiler_means_no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.delenv("TORCHOPT_LITE_NATIVE", raising=False)
    assert _native._build_and_load() is None


def test_failed_compilation_means_no_library(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    """A compiler that fails leaves nothing half-written in the cache."""
    if shutil.which("false") is None:
        pytest.skip("no `false` command to stand in for a failing compiler")
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("TORCHOPT_LITE_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCHOPT_LITE_NATIVE", raising=False)
    assert _native._build_and_load() is None
    assert not any(p.suffix == ".so" for p in tmp_path.rglob("*"))


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here")
def test_builds_into_the_configured_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    monkeypatch.setenv("TORCHOPT_LITE_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCHOPT_LITE_NATIVE", raising=False)
    lib = _native._build_and_load()
    assert lib is not None
    built = [p.name for p in tmp_path.iterdir()]
    assert len(built) == 1 and built[0].startswith("kernels-") and built[0].endswith(".so")
    assert _native._build_and_load() is not None  # the second load reuses the build


ADAM_CONFIGS = {
    "adam": {"lr": 0.05},
    "eps_root": {"lr": 0.05, "eps_root": 1e-4},
    "low-b1": {"lr": 0.05, "betas": (0.3, 0.9)},  # 1 - b1 >= 0.5: lerp from the other end
    "decay+maximize": {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
}


def _unrolled_adam(config: str, dtype: torch.dtype, steps: int = 3) -> tuple[list, list, list]:
    """Final params, and the gradients of their sum w.r.t. the initial params and every g_k."""
    gen = torch.Generator().manual_seed(4)
    shapes = [(7, 5), (70_001,), (0,), (3,)]
    params = [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]
    grads = [
        [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]
        for _ in range(steps)
    ]
    opt = torchopt_lite.adam(**ADAM_CONFIGS[config])
    state, p = opt.init(params), params
    for g in grads:
        u, state = opt.update(g, state, params=p, inplace=False)
        p = torchopt_lite.apply_updates(p, u, inplace=False)
    total = sum(x.sum() for x in p)
    first_order = torch.autograd.grad(total, [*params, *(x for g in grads for x in g)])
    return [x.detach() for x in p], list(first_order), grads


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_out_of_place_and_its_backward_equal_the_fallbacks(
    config: str, dtype: torch.dtype
) -> None:
    """Forward and no-graph backward through the C loops = torch's kernels and foreach ops."""
    calls = {"forward": 0, "backward": 0}

    def counting(name: str, real: object) -> object:
        def wrapper(*args: object, **kwargs: object) -> object:
            out = real(*args, **kwargs)  # type: ignore[operator]
            calls[name] += out is not None
            return out

        return wrapper

    with (
        mock.patch.object(_native, "adam_forward", counting("forward", _native.adam_forward)),
        mock.patch.object(_native, "adam_backward", counting("backward", _native.adam_backward)),
    ):
        native = _unrolled_adam(config, dtype)
    assert calls == {"forward": 3, "backward": 3}
    with mock.patch.dict(_native._state, {"lib": None}):
        fallback = _unrolled_adam(config, dtype)
        exact = _unrolled_adam(config, torch.float64)  # the same inputs, in float64

    def error(run: tuple) -> float:
        """The largest error against float64, relative to each tensor's scale."""
        pairs = zip(run[0] + run[1], exact[0] + exact[1], strict=True)
        return max(
            float((x.double() - y).abs().max() / y.abs().max()) for x, y in pairs if y.numel()
        )

    # The paths round in different orders (torch's kernel divides by sqrt(bc2); the C loop
    # multiplies v by 1/bc2) and 1/sqrt(v) amplifies rounding where v is tiny, so in float32
    # the C loops must be as accurate as the fallbacks, not equal to them.
    if dtype == torch.float64:
        assert error(native) < 1e-11
    else:
        assert error(native) <= 2 * error(fallback) + 1e-6


@needs_kernel
def test_adam_backward_with_absent_and_strided_output_gradients() -> None:
    """Unused outputs (None) count as zeros; strided and broadcast output gradients work too."""
    from torchopt_lite.alias._adam_function import AdamConfig, _backward_in_place

    gen = torch.Generator().manual_seed(5)
    n, size = 3, 40_000
    g, mu_new = ([torch.randn(size, generator=gen, dtype=torch.float64) for _ in range(n)]
                 for _ in range(2))  # fmt: skip
    nu_new = [torch.rand(size, generator=gen, dtype=torch.float64) + 0.1 for _ in range(n)]
    bars = [torch.randn(size, generator=gen, dtype=torch.float64) for _ in range(3 * n)]
    cfg = AdamConfig(n, 0.9, 0.999, 1e-8, 0.0)
    count, lr = torch.tensor(2), 0.01
    a, c = -lr / (1 - 0.9**2), 1 / (1 - 0.999**2)
    strided = list(bars)
    strided[0] = torch.randn(2 * size, generator=gen, dtype=torch.float64)[::2]
    strided[n] = torch.ones((), dtype=torch.float64).expand(size)  # the gradient of a sum
    cases = [
        [None if i in absent else x for i, x in enumerate(bars)]
        for absent in ([], [0], [n + 1], [2 * n + 2], list(range(3 * n)))
    ]
    for grads in [*cases, strided]:
        got = _native.adam_backward(
            grads[:n], grads[n : 2 * n], grads[2 * n :], g, mu_new, nu_new,
            b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, a=a, c=c,
        )  # fmt: skip
        assert got is not None
        want = _backward_in_place(cfg, count, lr, g, mu_new, nu_new, tuple(grads))
        for x, y in zip([*got[0], *got[1], *got[2]], want, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here")
def test_a_corrupt_cached_library_is_not_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    """A damaged file under the library's name means no library, not a crash."""
    monkeypatch.setenv("TORCHOPT_LITE_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCHOPT_LITE_NATIVE", raising=False)
    name = _native._library_name(os.environ.get("CC") or "cc")
    (tmp_path / name).write_bytes(b"not a shared object")  # never loaded by this process
    assert _native._build_and_load() is None
