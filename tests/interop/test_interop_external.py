"""ExternalOptimizer: numpy arrays updated bit for bit like the same optimizer on tensors."""

from __future__ import annotations

import numpy as np
import optree
import pytest
import torch

import torchopt_lite as to
from torchopt_lite.interop import ExternalOptimizer

OPTIMIZERS = {
    "adam+schedule+clip": lambda: to.chain(
        to.clip_grad_norm(max_norm=1.0),
        to.adam(lr=to.schedule.exponential_decay(0.1, 0.8, transition_steps=3)),
    ),
    "sgd-nesterov": lambda: to.sgd(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adamw": lambda: to.adamw(lr=to.schedule.linear_schedule(0.1, 0.01, 10), weight_decay=0.1),
    "rmsprop-centered": lambda: to.rmsprop(lr=0.01, momentum=0.5, centered=True),
}


def simulation_grad(w: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of a toy numpy model: 0.5 ||tanh(A w) + b - t||^2 (computed by hand)."""
    A = np.linspace(-1, 1, w.shape[0] * 5).reshape(5, w.shape[0])
    target = np.linspace(0.5, -0.5, 5)[:, None] * np.ones((1, w.shape[1]))
    h = np.tanh(A @ w.astype(np.float64))
    r = h + b - target
    return {"w": A.T @ (r * (1 - h**2)), "b": r.sum(0)}


def _initial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3)}


def _run_torch(make, steps: int) -> dict[str, np.ndarray]:
    init = _initial()
    params = {k: torch.tensor(v) for k, v in init.items()}
    opt = make()
    state = opt.init(params)
    for _ in range(steps):
        g = simulation_grad(params["w"].numpy(), params["b"].numpy())
        grads = {k: torch.tensor(v, dtype=params[k].dtype) for k, v in g.items()}
        updates, state = opt.update(grads, state, params=params)
        params = to.apply_updates(params, updates)
    return {k: v.numpy() for k, v in params.items()}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_matches_torch_run_bit_for_bit(name: str) -> None:
    arrays = _initial()
    w_id, w_view = id(arrays["w"]), arrays["w"][1:3]  # another program's view of the memory
    opt = ExternalOptimizer(arrays, OPTIMIZERS[name]())
    assert opt.zero_copy
    for _ in range(12):
        opt.step(simulation_grad(arrays["w"], arrays["b"]))
    expected = _run_torch(OPTIMIZERS[name], 12)
    assert id(arrays["w"]) == w_id and arrays["w"].dtype == np.float32
    for k in ("w", "b"):
        np.testing.assert_array_equal(arrays[k], expected[k])
    np.testing.assert_array_equal(w_view, expected["w"][1:3])
    assert not np.array_equal(arrays["w"], _initial()["w"])  # it moved


def test_copy_path_for_arrays_torch_cannot_view() -> None:
    init = _initial()
    big = np.zeros((4, 6), dtype=np.float32)
    big[:, ::2] = init["w"]
    arrays = {"w": big[:, ::2], "b": init["b"].astype(">f8")}  # strided view, big-endian
    opt = ExternalOptimizer(arrays, OPTIMIZERS["adam+schedule+clip"]())
    for _ in range(12):
        opt.step(simulation_grad(arrays["w"], arrays["b"]))
    expected = _run_torch(OPTIMIZERS["adam+schedule+clip"], 12)
    np.testing.assert_array_equal(arrays["w"], expected["w"])
    np.testing.assert_array_equal(arrays["b"], expected["b"])
    np.testing.assert_array_equal(big[:, ::2], expected["w"])  # written into the owner's memory
    np.testing.assert_array_equal(big[:, 1::2], 0.0)
    assert arrays["b"].dtype == np.dtype(">f8")
    # positive, item-aligned strides are viewed without a copy; negative strides are not
    assert ExternalOptimizer({"w": big[:, ::2]}, to.sgd(0.1)).zero_copy
    assert not ExternalOptimizer({"w": np.zeros(3)[::-1]}, to.sgd(0.1)).zero_copy
    assert not opt.zero_copy


def test_state_dict_round_trip(tmp_path) -> None:
    make = OPTIMIZERS["adam+schedule+clip"]
    arrays = _initial()
    opt = ExternalOptimizer(arrays, make())
    for _ in range(5):
        opt.step(simulation_grad(arrays["w"], arrays["b"]))
    np.savez(tmp_path / "state.npz", **opt.state_dict())
    np.savez(tmp_path / "params.npz", **arrays)

    # a new process: reload the params the program saved and the optimizer state
    with np.load(tmp_path / "params.npz") as f:
        resumed = {k: f[k].copy() for k in f.files}
    opt2 = ExternalOptimizer(resumed, make())
    with np.load(tmp_path / "state.npz") as f:
        opt2.load_state_dict(f)
    for _ in range(7):
        opt2.step(simulation_grad(resumed["w"], resumed["b"]))
    expected = _run_torch(make, 12)
    for k in ("w", "b"):
        np.testing.assert_array_equal(resumed[k], expected[k])
    saved = opt2.state_dict()
    assert saved["state.4"].dtype == np.int64 and int(saved["state.4"]) == 12  # adam's count


def test_torch_save_round_trip(tmp_path) -> None:
    arrays = _initial()
    opt = ExternalOptimizer(arrays, to.adam(lr=0.1))
    opt.step(simulation_grad(arrays["w"], arrays["b"]))
    torch.save(opt.state_dict(), tmp_path / "s.pt")
    opt2 = ExternalOptimizer(_initial(), to.adam(lr=0.1))
    opt2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=False))
    for a, b in zip(optree.tree_leaves(opt.state), optree.tree_leaves(opt2.state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_grads_are_not_modified_and_cast() -> None:
    arrays = {"w": np.ones(3, dtype=np.float32)}
    g = np.array([1.0, 2.0, 3.0])  # float64 grads for float32 params
    g_before = g.copy()
    opt = ExternalOptimizer(arrays, to.sgd(lr=0.5, momentum=0.9))
    opt.step({"w": g})
    opt.step({"w": [1, 1, 1]})  # array-likes and integer gradients are accepted
    np.testing.assert_array_equal(g, g_before)
    # m1 = g, w1 = 1 - 0.5 g; m2 = 0.9 g + 1, w2 = w1 - 0.5 m2 (in float32)
    w1 = np.float32(1) - np.float32(0.5) * g.astype(np.float32)
    m2 = np.float32(0.9) * g.astype(np.float32) + np.float32(1)
    np.testing.assert_array_equal(arrays["w"], w1 - np.float32(0.5) * m2)


def _snapshot(opt, arrays):
    return [a.copy() for a in optree.tree_leaves(arrays)], [
        t.clone() for t in optree.tree_leaves(opt.state)
    ]


def _assert_unchanged(opt, arrays, snap):
    for a, b in zip(optree.tree_leaves(arrays), snap[0], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(optree.tree_leaves(opt.state), snap[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_construction_errors() -> None:
    with pytest.raises(TypeError, match=r"ExternalOptimizer: optimizer must be a Gradient"):
        ExternalOptimizer({"w": np.zeros(2)}, torch.optim.SGD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ExternalOptimizer: params must hold at least one"):
        ExternalOptimizer({}, to.sgd(0.1))
    with pytest.raises(TypeError, match=r"every leaf of params must be a numpy\.ndarray"):
        ExternalOptimizer({"w": torch.zeros(2)}, to.sgd(0.1))
    with pytest.raises(TypeError, match=r"params must be float16, float32 or float64.*int64"):
        ExternalOptimizer({"w": np.zeros(2, dtype=np.int64)}, to.sgd(0.1))
    frozen = np.zeros(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"params leaf 0 is read-only"):
        ExternalOptimizer([frozen], to.sgd(0.1))


def test_step_errors_leave_everything_unchanged() -> None:
    arrays = _initial()
    opt = ExternalOptimizer(arrays, to.adam(lr=0.1))
    opt.step(simulation_grad(arrays["w"], arrays["b"]))
    snap = _snapshot(opt, arrays)
    good = simulation_grad(arrays["w"], arrays["b"])
    with pytest.raises(ValueError, match=r"ExternalOptimizer\.step: grads must have the same"):
        opt.step({"w": good["w"]})
    with pytest.raises(ValueError, match=r"grads leaf 1 has shape \(4,\) but its parameter"):
        opt.step({"w": np.zeros(4), "b": good["b"]})  # leaf 0 ("b") fine, leaf 1 ("w") bad
    with pytest.raises(TypeError, match=r"grads must be real numeric arrays; leaf 0 is complex"):
        opt.step({"b": good["b"].astype(complex), "w": good["w"]})
    _assert_unchanged(opt, arrays, snap)


def test_load_state_dict_errors_leave_state_unchanged() -> None:
    arrays = _initial()
    opt = ExternalOptimizer(arrays, to.adam(lr=0.1))
    opt.step(simulation_grad(arrays["w"], arrays["b"]))
    snap = _snapshot(opt, arrays)
    other = ExternalOptimizer(_initial(), to.sgd(lr=0.1, momentum=0.9)).state_dict()
    with pytest.raises(ValueError, match=r"load_state_dict: the saved state has structure"):
        opt.load_state_dict(other)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"the saved state lacks state\.2"):
        opt.load_state_dict({k: v for k, v in sd.items() if k != "state.2"})
    with pytest.raises(ValueError, match=r"state\.1 is float64\[4, 3\] but this optimizer expect"):
        opt.load_state_dict({**sd, "state.1": np.zeros((4, 3))})
    _assert_unchanged(opt, arrays, snap)
