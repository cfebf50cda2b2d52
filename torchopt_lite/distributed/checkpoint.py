"""Checkpoints of meta-training under ``torchrun``: rank 0 writes atomically, every rank loads."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from torchopt_lite.distributed.collective import _check_int, _initialized, collective_rank


def _barrier() -> None:
    if _initialized():
        dist.barrier()


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    step: int,
    meta_params: nn.Module,
    meta_optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save the meta-parameters and meta-optimizer state on rank 0; every rank then waits.

    Rank 0 writes ``{"step", "meta_params", "meta_optimizer", "extra"}`` to a temporary file
    beside ``path`` and renames it over ``path`` (:func:`os.replace`), so a crash never leaves a
    half-written checkpoint; then all ranks meet at a barrier, so that a :func:`load_checkpoint`
    after this call sees the file. Every rank must call it. Save the module that holds the
    meta-parameters themselves (after the inner loops restored them), not an adapted copy.

    Args:
        path: the checkpoint file.
        step: the meta-step to resume from.
        meta_params: the module of meta-parameters (its ``state_dict``).
        meta_optimizer: the outer optimizer (its ``state_dict``), if any.
        extra: more tensors, numbers and strings to save (``torch.load(weights_only=True)``
            must be able to read them back).

    Example:
        >>> import tempfile, pathlib
        >>> from torchopt_lite.distributed import load_checkpoint, save_checkpoint
        >>> net = torch.nn.Linear(2, 1)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "meta.pt"
        >>> save_checkpoint(path, step=10, meta_params=net)
        >>> load_checkpoint(path, meta_params=torch.nn.Linear(2, 1))
        10
    """
    _check_int("save_checkpoint", "step", step, 0)
    if not isinstance(meta_params, nn.Module):
        raise TypeError(f"save_checkpoint: meta_params must be an nn.Module; got {meta_params!r}.")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"save_checkpoint: extra must be a dict or None; got {extra!r}.")
    if collective_rank() == 0:
        path = os.fspath(path)
        state = {
            "step": step,
            "meta_params": meta_params.state_dict(),
            "meta_optimizer": None if meta_optimizer is None else meta_optimizer.state_dict(),
            "extra": {} if extra is None else extra,
        }
        temporary = f"{path}.tmp-{os.getpid()}"
        try:
            torch.save(state, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    _barrier()


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    meta_params: nn.Module,
    meta_optimizer: torch.optim.Optimizer | None = None,
    map_location: Any = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Load a :func:`save_checkpoint` file on every rank; return the saved meta-step.

    Read with ``torch.load(weights_only=True)``: a checkpoint cannot run code.

    Args:
        path: the checkpoint file.
        meta_params: the module to load the meta-parameters into.
        meta_optimizer: the outer optimizer to load the state into; it must have been saved.
        map_location: as for :func:`torch.load` (e.g. ``"cuda:0"`` for this rank's device).
        extra: a dict updated in place with the saved ``extra`` entries.

    Returns:
        The ``step`` given to :func:`save_checkpoint`.

    Example:
        See :func:`save_checkpoint`.
    """
    if not isinstance(meta_params, nn.Module):
        raise TypeError(f"load_checkpoint: meta_params must be an nn.Module; got {meta_params!r}.")
    state = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    meta_params.load_state_dict(state["meta_params"])
    if meta_optimizer is not None:
        if state["meta_optimizer"] is None:
            raise ValueError(
                f"load_checkpoint: meta_optimizer was given but {os.fspath(path)!r} holds no "
                "optimizer state (save_checkpoint was called without meta_optimizer)."
            )
        meta_optimizer.load_state_dict(state["meta_optimizer"])
    if extra is not None:
        extra.update(state["extra"])
    return int(state["step"])
