"""Which rendering runs: torch's kernels where they compute right, the transforms elsewhere."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import torchopt_lite
from tests._generic import generic
from torchopt_lite._dispatch import _kernels

KERNELS = {"adam": "_fused_adam_", "adamw": "_fused_adamw_", "sgd": "_fused_sgd_"}
CONFIGS = {
    "adam": {"lr": 0.03, "weight_decay": 0.1, "maximize": True},
    "adamw": {"lr": 0.03, "weight_decay": 0.1},
    "sgd": {"lr": 0.03, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1},
}


def _run(opt: object, leaves: list[torch.Tensor], inplace: bool = True) -> tuple:
    params = [x.clone() for x in leaves]
    state = opt.init(params)  # type: ignore[attr-defined]
    for k in range(3):
        grads = [(x * (k + 2)).sin() for x in leaves]
        updates, state = opt.update(grads, state, params=params, inplace=inplace)  # type: ignore[attr-defined]
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
    return params, state


def _spy(alias: str) -> mock._patch:
    kernel = KERNELS[alias]
    return mock.patch(f"torch.{kernel}", wraps=getattr(torch, kernel))


@pytest.mark.parametrize("alias", list(KERNELS))
def test_kernel_runs_in_place_on_dense_float_leaves(alias: str) -> None:
    leaves = [
        torch.randn(3, 4),
        torch.randn(5, dtype=torch.float64),
        torch.randn(2, dtype=torch.complex64),
    ]
    with _spy(alias) as spy:
        _run(getattr(torchopt_lite, alias)(**CONFIGS[alias]), leaves)
    assert spy.call_count >= 3 * 2  # one call per (device, dtype) group per chunk, each step


def _strided(k: int) -> torch.Tensor:
    return torch.full((3, 8), float(k))[:, ::2]


def _transposed(k: int) -> torch.Tensor:
    return torch.full((4, 3), float(k)).t()


# Gradient layouts the kernels would read wrongly, or round unlike torch.optim. (An expanded
# gradient is copied to a dense buffer before an in-place step, and the kernel may take that.)
GRADIENTS = {
    "strided": _strided,
    "transposed": _transposed,
    "float16": lambda k: torch.full((3,), float(k), dtype=torch.float16),
    "bfloat16": lambda k: torch.full((3,), float(k), dtype=torch.bfloat16),
}


@pytest.mark.parametrize("layout", list(GRADIENTS))
@pytest.mark.parametrize("alias", list(KERNELS))
def test_kernel_declines_what_it_would_compute_wrong(alias: str, layout: str) -> None:
    make = GRADIENTS[layout]
    opt = getattr(torchopt_lite, alias)(**CONFIGS[alias])
    params = [torch.zeros_like(make(0))]
    state = opt.init(params)
    with _spy(alias) as spy:
        for k in range(2):
            updates, state = opt.update([make(k + 1)], state, params=params)
            torchopt_lite.apply_updates(params, updates)
    assert spy.call_count == 0


@pytest.mark.parametrize("alias", list(KERNELS))
def test_kernel_is_not_used_out_of_place(alias: str) -> None:
    with _spy(alias) as spy:
        _run(getattr(torchopt_lite, alias)(**CONFIGS[alias]), [torch.randn(3)], inplace=False)
    # out of place, only the Adam node's forward may call torch's Adam kernel on fresh buffers
    assert alias == "adam" or spy.call_count == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alias", list(KERNELS))
def test_scratch_chunks_equal_the_transforms(
    alias: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In update mode the kernel writes into zeroed scratch chunks: leaves split across chunks,
    chunks of several leaves, empty leaves, all equal the transforms' own math."""
    monkeypatch.setattr(_kernels, "SCRATCH", 7)
    gen = torch.Generator().manual_seed(0)
    sizes = [(1,), (5,), (4, 5), (0,), (2,), (3, 3)]
    leaves = [torch.randn(s, generator=gen, dtype=dtype) for s in sizes]
    opt = getattr(torchopt_lite, alias)(**CONFIGS[alias])
    with _spy(alias) as spy:
        fused = _run(opt, leaves)
    assert spy.call_count > 3 * 3  # several chunks per step
    plain = _run(generic(opt), leaves)
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for a, b in zip(fused[0], plain[0], strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_one_tensor_for_two_leaves_is_stepped_as_two() -> None:
    """autograd.grad(a + b, (a, b)) returns one tensor twice; in place, each leaf's update must
    depend on its own input only (the second occurrence is copied first)."""
    a, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    ga, gb = torch.autograd.grad((a + b).sum(), (a, b))
    assert ga is gb
    for alias in KERNELS:
        opt = getattr(torchopt_lite, alias)(**CONFIGS[alias])
        params = [a.detach().clone(), b.detach().clone()]
        updates, _ = opt.update([ga.clone(), ga.clone()], opt.init(params), params=params)
        shared = [ga.clone()]
        same, _ = opt.update([shared[0], shared[0]], opt.init(params), params=params)
        for x, y in zip(updates, same, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("alias", list(KERNELS))
def test_cuda_kernel_equals_the_transforms(alias: str) -> None:
    leaves = [torch.randn(3, 4, device="cuda"), torch.randn(70_000, device="cuda")]
    opt = getattr(torchopt_lite, alias)(**CONFIGS[alias])
    with _spy(alias) as spy:
        fused = _run(opt, leaves)
    assert spy.call_count > 0
    for a, b in zip(fused[0], _run(generic(opt), leaves)[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
