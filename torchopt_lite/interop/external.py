"""Optimize numpy arrays owned by another program with any torchopt_lite optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import optree
import torch
from torch import Tensor

from torchopt_lite.base import GradientTransformation
from torchopt_lite.update import apply_updates

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
TREESPEC_KEY = "treespec"


class ExternalOptimizer:
    r"""Update numpy arrays in place with a torchopt_lite optimizer and external gradients.

    For parameters :math:`\theta` that live in another program (a simulator, a numpy model, a
    C extension) and gradients :math:`g_t` it computes, each :meth:`step` runs

    .. math::
        (u_t, s_t) = \mathrm{update}(g_t, s_{t-1}, \theta_{t-1}), \qquad
        \theta_t = \theta_{t-1} + u_t

    with any :class:`~torchopt_lite.base.GradientTransformation` (``adam`` with a schedule,
    ``chain(clip_grad_norm(...), ...)``, ...) and writes :math:`\theta_t` into the caller's
    arrays. The results are bit for bit those of the same optimizer on torch tensors.

    Arrays that torch can view (float16/32/64, native byte order, writeable, strides a
    non-negative multiple of the item size) are shared with zero copies: the optimizer writes
    straight into their memory. Other float arrays are updated through a private tensor copy
    that is written back after each step.

    Args:
        params: a tree (dict, list, tuple, ...) of writeable float numpy arrays. The optimizer
            keeps these array objects: if the other program replaces an array instead of
            updating it, build a new optimizer (and carry the state over with
            :meth:`state_dict`).
        optimizer: the transformation, e.g. ``torchopt_lite.adam(lr=schedule)``.

    Example:
        >>> import numpy as np
        >>> theta = {"w": np.zeros(3)}
        >>> opt = torchopt_lite.interop.ExternalOptimizer(theta, torchopt_lite.sgd(lr=0.5))
        >>> opt.step({"w": np.array([1.0, -2.0, 0.0])})   # e.g. from a numpy simulation
        >>> theta["w"]
        array([-0.5,  1. ,  0. ])
        >>> opt.zero_copy
        True
    """

    def __init__(self, params: Any, optimizer: GradientTransformation) -> None:
        caller = "ExternalOptimizer"
        if not isinstance(optimizer, GradientTransformation):
            raise TypeError(
                f"{caller}: optimizer must be a GradientTransformation such as "
                f"torchopt_lite.adam(...); got {type(optimizer).__name__}."
            )
        arrays, spec = optree.tree_flatten(params)
        if not arrays:
            raise ValueError(f"{caller}: params must hold at least one array; got {params!r}.")
        for i, arr in enumerate(arrays):
            if not isinstance(arr, np.ndarray):
                raise TypeError(
                    f"{caller}: every leaf of params must be a numpy.ndarray (the arrays the "
                    f"other program reads); leaf {i} is {type(arr).__name__} in {spec}."
                )
            if arr.dtype.type not in FLOAT_DTYPES:
                raise TypeError(
                    f"{caller}: params must be float16, float32 or float64 arrays; leaf {i} is "
                    f"{arr.dtype}."
                )
            if not arr.flags.writeable:
                raise ValueError(
                    f"{caller}: params leaf {i} is read-only, so it cannot be updated in place; "
                    "pass a writeable array."
                )
        self.params = params
        self.optimizer = optimizer
        self._arrays: list[np.ndarray] = arrays
        self._spec = spec
        self._tensors = [_as_tensor(arr) for arr in arrays]
        self._copied = [
            i
            for i, (arr, t) in enumerate(zip(arrays, self._tensors, strict=True))
            if not np.shares_memory(arr, t.numpy())
        ]
        self.state = optimizer.init(optree.tree_unflatten(spec, self._tensors))

    @property
    def zero_copy(self) -> bool:
        """Whether every array is shared with its tensor (no copy in :meth:`step`)."""
        return not self._copied

    def step(self, grads: Any) -> None:
        """Apply one update from gradients computed outside torch.

        Args:
            grads: a tree with the structure of ``params`` whose leaves are real arrays (or
                anything :func:`numpy.asarray` accepts) of the matching shapes. They are copied
                (the optimizer never writes into them) and cast to each parameter's dtype.
        """
        caller = "ExternalOptimizer.step"
        try:
            leaves = self._spec.flatten_up_to(grads)
        except ValueError as err:
            raise ValueError(
                f"{caller}: grads must have the same tree structure as params; "
                f"params: {self._spec}, grads: {optree.tree_structure(grads)} ({err})"
            ) from err
        grad_tensors = []
        for i, (g, arr) in enumerate(zip(leaves, self._arrays, strict=True)):
            g_arr = np.asarray(g)
            if g_arr.dtype.kind not in "fiu":
                raise TypeError(
                    f"{caller}: grads must be real numeric arrays; leaf {i} is {g_arr.dtype}."
                )
            if g_arr.shape != arr.shape:
                raise ValueError(
                    f"{caller}: grads leaf {i} has shape {g_arr.shape} but its parameter has "
                    f"shape {arr.shape}."
                )
            grad_tensors.append(torch.tensor(g_arr, dtype=self._tensors[i].dtype))
        params_tree = optree.tree_unflatten(self._spec, self._tensors)
        updates, self.state = self.optimizer.update(
            optree.tree_unflatten(self._spec, grad_tensors), self.state, params=params_tree
        )
        apply_updates(params_tree, updates)
        for i in self._copied:
            np.copyto(self._arrays[i], self._tensors[i].numpy())

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as a flat dict of numpy arrays (copies).

        It round-trips through ``np.savez(path, **opt.state_dict())`` and
        ``opt.load_state_dict(np.load(path))``, or through ``torch.save``.
        """
        leaves, spec = optree.tree_flatten(self.state)
        out = {f"state.{i}": _to_numpy(leaf) for i, leaf in enumerate(leaves)}
        out[TREESPEC_KEY] = np.array(str(spec))
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` of an optimizer of the same kind.

        Everything is checked before anything is replaced: a mismatch raises and leaves the
        current state as it was.
        """
        caller = "ExternalOptimizer.load_state_dict"
        leaves, spec = optree.tree_flatten(self.state)
        saved_spec = str(np.asarray(state_dict.get(TREESPEC_KEY, "")))
        if saved_spec != str(spec):
            raise ValueError(
                f"{caller}: the saved state has structure {saved_spec or '(none)'} but this "
                f"optimizer's state has {spec}; load a state saved by the same optimizer on "
                "params of the same structure."
            )
        missing = [f"state.{i}" for i in range(len(leaves)) if f"state.{i}" not in state_dict]
        if missing:
            raise ValueError(f"{caller}: the saved state lacks {', '.join(missing)}.")
        new_leaves = []
        for i, leaf in enumerate(leaves):
            value = np.asarray(state_dict[f"state.{i}"])
            want = _to_numpy(leaf)
            if value.shape != want.shape or value.dtype != want.dtype:
                raise ValueError(
                    f"{caller}: state.{i} is {value.dtype}{list(value.shape)} but this "
                    f"optimizer expects {want.dtype}{list(want.shape)}."
                )
            if isinstance(leaf, Tensor):
                new_leaves.append(torch.tensor(value).to(leaf.device))
            else:
                new_leaves.append(type(leaf)(value.item()))
        self.state = optree.tree_unflatten(spec, new_leaves)


def _as_tensor(arr: np.ndarray) -> Tensor:
    """A tensor sharing ``arr``'s memory where torch can view it, else a copy."""
    native = arr.dtype.byteorder in ("=", "|") or arr.dtype.isnative
    strides_ok = all(s >= 0 and s % arr.itemsize == 0 for s in arr.strides)
    if native and strides_ok:
        return torch.from_numpy(arr)
    return torch.tensor(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")))


def _to_numpy(leaf: Any) -> np.ndarray:
    if isinstance(leaf, Tensor):
        return leaf.detach().cpu().numpy().copy()
    return np.asarray(leaf)
