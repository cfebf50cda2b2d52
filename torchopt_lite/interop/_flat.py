"""The layout of a pytree of tensors as one float64 vector (what scipy optimizes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optree
import torch
from torch import Tensor

SUPPORTED_DTYPES = (torch.float32, torch.float64)


class FlatParams:
    """Pack a tree of float tensors into one float64 vector and back.

    The vector holds the leaves in ``optree.tree_leaves`` order, each in row-major order.
    :meth:`unravel` is differentiable and restores every leaf's shape, dtype and device.
    """

    def __init__(self, params: Any, caller: str) -> None:
        leaves, spec = optree.tree_flatten(params)
        if not leaves:
            raise ValueError(f"{caller}: params must hold at least one tensor; got {params!r}.")
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, Tensor):
                raise TypeError(
                    f"{caller}: every leaf of params must be a torch.Tensor; "
                    f"leaf {i} is {type(leaf).__name__} in {spec}."
                )
            if leaf.dtype not in SUPPORTED_DTYPES:
                raise TypeError(
                    f"{caller}: params must be float32 or float64 (scipy works in float64, and a "
                    f"{leaf.dtype} solution or derivative would lose that precision); leaf {i} "
                    f"is {leaf.dtype}. Cast with .float() or .double() first."
                )
        devices = {leaf.device for leaf in leaves}
        if len(devices) > 1:
            raise ValueError(
                f"{caller}: all params must be on one device; got {sorted(map(str, devices))}."
            )
        device = leaves[0].device
        if device.type == "meta":
            raise ValueError(
                f"{caller}: params are on the 'meta' device, which holds no values to optimize; "
                "pass tensors on the CPU or an accelerator."
            )
        self.spec = spec
        self.shapes = [leaf.shape for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]
        self.sizes = [leaf.numel() for leaf in leaves]
        self.size = sum(self.sizes)
        self.device = device
        self.caller = caller

    def pack(self, tree: Any) -> np.ndarray:
        """The float64 numpy vector of a tree shaped like the params (a new array)."""
        leaves = optree.tree_leaves(tree)
        flat = torch.cat([leaf.detach().reshape(-1).to("cpu", torch.float64) for leaf in leaves])
        return flat.numpy().copy()

    def to_tensor(self, x: Any) -> Tensor:
        """A float64 tensor on the params' device holding a copy of the vector ``x``."""
        return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64).to(self.device)

    def unravel(self, flat: Tensor) -> Any:
        """The tree of a flat tensor: split, reshape, cast to each leaf's dtype (differentiable)."""
        chunks = torch.split(flat, self.sizes)
        leaves = [
            chunk.reshape(shape).to(dtype)
            for chunk, shape, dtype in zip(chunks, self.shapes, self.dtypes, strict=True)
        ]
        return optree.tree_unflatten(self.spec, leaves)

    def unpack(self, x: Any) -> Any:
        """The tree of a numpy vector: new tensors, each with its own storage."""
        chunks = torch.split(torch.as_tensor(np.asarray(x, dtype=np.float64)), self.sizes)
        leaves = [
            chunk.reshape(shape).to(device=self.device, dtype=dtype, copy=True)
            for chunk, shape, dtype in zip(chunks, self.shapes, self.dtypes, strict=True)
        ]
        return optree.tree_unflatten(self.spec, leaves)

    def wrap_callback(self, callback: Callable[..., Any] | None) -> Callable[..., Any] | None:
        """A scipy callback that hands ``callback`` the point as a tree, then scipy's extras."""
        if callback is None:
            return None
        if not callable(callback):
            raise TypeError(
                f"{self.caller}: callback must be callable; got {type(callback).__name__}."
            )

        def scipy_callback(xk: Any, *rest: Any, **kwargs: Any) -> Any:
            return callback(self.unpack(xk), *rest, **kwargs)

        return scipy_callback
