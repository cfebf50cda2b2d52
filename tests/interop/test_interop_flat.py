"""The packed vector: round trips, dtypes, devices; numpy_function through minimize; CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchopt_lite import interop
from torchopt_lite.interop._flat import FlatParams

shapes = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
leaves = st.tuples(shapes, st.sampled_from([torch.float32, torch.float64]))


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from("abcde"), leaves, min_size=1), st.integers(0, 2**31))
def test_pack_unpack_round_trip(spec: dict, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    tree = {k: torch.randn(shape, dtype=dt, generator=g) for k, (shape, dt) in spec.items()}
    flat = FlatParams(tree, "test")
    x = flat.pack(tree)
    assert x.dtype == np.float64 and x.shape == (sum(t.numel() for t in tree.values()),)
    back = flat.unpack(x)
    for k in tree:
        assert back[k].dtype == tree[k].dtype and back[k].shape == tree[k].shape
        torch.testing.assert_close(back[k], tree[k], rtol=0, atol=0)  # float32 -> 64 -> 32 exact
        assert back[k].data_ptr() != tree[k].data_ptr() or tree[k].numel() == 0
    # leaves in optree order (sorted dict keys), each row-major
    expected = np.concatenate([tree[k].double().reshape(-1).numpy() for k in sorted(tree)])
    np.testing.assert_array_equal(x, expected)
    # unravel is differentiable: the gradient of a sum of leaves is all ones
    xt = torch.tensor(x, requires_grad=True)
    total = sum(v.sum() for v in flat.unravel(xt).values())
    if xt.numel():
        (grad,) = torch.autograd.grad(total, xt)
        torch.testing.assert_close(grad, torch.ones_like(xt), rtol=0, atol=0)


def test_numpy_function_as_objective() -> None:
    """An external numpy objective with a user gradient (diff.zero_order.numpy_function)."""
    calls: list = []

    def fun(x):
        calls.append(x.copy())
        return np.sum((x - np.arange(3.0)) ** 2)

    f = interop.numpy_function(fun, grad=lambda x: 2 * (x - np.arange(3.0)))
    sol, res = interop.minimize(f, torch.zeros(3, dtype=torch.float64), method="BFGS")
    assert res.success and len(calls) == res.nfev
    torch.testing.assert_close(sol, torch.arange(3.0, dtype=torch.float64), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"'Newton-CG' needs Hessian-vector products"):
        interop.minimize(f, torch.zeros(3, dtype=torch.float64), method="Newton-CG")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_params_run_on_device() -> None:
    lam = torch.tensor(0.5, dtype=torch.float64, device="cuda", requires_grad=True)
    X = torch.randn(20, 3, dtype=torch.float64, device="cuda")
    y = torch.randn(20, dtype=torch.float64, device="cuda")

    def fun(p, lam):
        return 0.5 * ((X @ p["w"] - y) ** 2).sum() + 0.5 * lam * (p["w"] ** 2).sum()

    params = {"w": torch.zeros(3, dtype=torch.float64, device="cuda")}
    sol, res = interop.minimize(fun, params, args=(lam,), method="trust-krylov", tol=1e-12)
    assert res.success and sol["w"].device.type == "cuda"
    A = X.T @ X + lam * torch.eye(3, dtype=torch.float64, device="cuda")
    w_star = torch.linalg.solve(A, X.T @ y)
    torch.testing.assert_close(sol["w"], w_star.detach(), rtol=0, atol=1e-8)
    got = torch.autograd.grad(sol["w"].sum(), lam)[0]
    expected = torch.autograd.grad(w_star.sum(), lam)[0]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-10)
