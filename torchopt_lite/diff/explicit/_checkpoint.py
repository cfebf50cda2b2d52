"""Checkpointed inner loops: segments of steps recomputed in the backward pass."""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.base import GradientTransformation
from torchopt_lite.typing import OptState, Params

ADJOINTS = ("unroll", "checkpoint", "truncated")


def resolve_adjoint(
    caller: str, adjoint: Any, truncate_every: Any, checkpoints: Any, steps: int
) -> str:
    """The adjoint mode, after checking it agrees with ``truncate_every`` and ``checkpoints``.

    ``adjoint=None`` means ``"truncated"`` when ``truncate_every`` is given (the spelling before
    ``adjoint`` existed) and ``"unroll"`` otherwise.
    """
    if adjoint is None:
        adjoint = "unroll" if truncate_every is None else "truncated"
    if not isinstance(adjoint, str) or adjoint not in ADJOINTS:
        raise ValueError(
            f"{caller}: adjoint must be one of 'unroll', 'checkpoint', 'truncated'; "
            f"got {adjoint!r}."
        )
    if adjoint == "truncated" and truncate_every is None:
        raise ValueError(
            f"{caller}: adjoint='truncated' needs truncate_every=k (the window of the "
            "meta-gradient)."
        )
    if adjoint != "truncated" and truncate_every is not None:
        raise ValueError(
            f"{caller}: truncate_every={truncate_every} applies to adjoint='truncated' only; "
            f"got adjoint={adjoint!r}."
        )
    if checkpoints is not None:
        if adjoint != "checkpoint":
            raise ValueError(
                f"{caller}: checkpoints={checkpoints!r} applies to adjoint='checkpoint' only; "
                f"got adjoint={adjoint!r}."
            )
        if isinstance(checkpoints, bool) or not isinstance(checkpoints, int):
            raise TypeError(
                f"{caller}: checkpoints must be None or an int in [1, steps]; "
                f"got {type(checkpoints).__name__}."
            )
        if not 1 <= checkpoints <= steps:
            raise ValueError(
                f"{caller}: checkpoints must be None or an int in [1, steps={steps}]; "
                f"got {checkpoints}."
            )
    return adjoint


def segment_lengths(steps: int, checkpoints: int | None) -> list[int]:
    """``k`` segment lengths summing to ``steps``, as equal as possible; ``k = ceil(sqrt(T))``
    when ``checkpoints`` is ``None``."""
    k = math.isqrt(steps - 1) + 1 if checkpoints is None else checkpoints
    return [steps // k + (i < steps % k) for i in range(k)]


class _Holder:
    """Where a saved tensor of a checkpointed segment's graph lives (``x=None``: dropped)."""

    __slots__ = ("__weakref__", "x")

    def __init__(self, x: Tensor | None) -> None:
        self.x = x


def _read(holder: _Holder) -> Tensor:
    """Unpack hook of a rerun's own graph (its holders stay full while it runs)."""
    assert holder.x is not None
    return holder.x


class _Tape:
    """The segments of one call of a checkpointed loop, to drop what a finished one rebuilt."""

    def __init__(self) -> None:
        self.rebuilt: weakref.ref[_Segment] | None = None  # weak: no segment-tape cycle


class _Segment:
    r"""``fn(*inputs)`` run once with its graph's saved tensors dropped after the forward pass.

    Saved-tensor hooks put every tensor the graph saves into a :class:`_Holder`. The gradients
    :math:`g_t` inside the segment are taken while the holders are full; when the segment
    returns, the holders are emptied, so the graph keeps only its structure and the inputs.
    The first time a backward pass meets an empty holder, ``fn`` is rerun on the same inputs
    (and random state): the ``i``-th tensor it saves refills the ``i``-th holder. A holder is
    emptied again when it is read, and the previous segment's leftovers when the next one is
    rebuilt, so a backward pass holds one segment's graph at a time (a segment whose holders
    were emptied too early is simply rebuilt again).

    ``torch.utils.checkpoint`` (non-reentrant) works the same way but treats each inner
    gradient inside the segment as a backward pass of its own: step :math:`i` reruns the
    segment's first :math:`i` steps during the forward pass and keeps what they saved, so both
    the time and the memory of a segment of :math:`n` steps grow like :math:`n^2`.
    """

    def __init__(self, fn: Callable[..., Any], inputs: Any, tape: _Tape) -> None:
        self.fn, self.tape = fn, tape
        self.inputs = inputs
        self.holders: list[weakref.ref[_Holder]] = []
        leaves: list[Any] = optree.tree_leaves(self.inputs)
        self.devices = sorted(
            {t.device.index or 0 for t in leaves if isinstance(t, Tensor) and t.is_cuda}
        )
        self.rng = torch.get_rng_state()
        self.cuda_rng = [torch.cuda.get_rng_state(d) for d in self.devices]
        kinds = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
        self.autocast = [
            (kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
            for kind in kinds
        ]
        self.running = False  # inside the forward pass: reads leave the holders full

    def run(self) -> Any:
        self.running = True
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                out = self.fn(*self.inputs)
        finally:
            self.running = False
            self._release()
        return out

    def _pack(self, x: Tensor) -> _Holder:
        # Detached: an output saved by its own node would otherwise hold that node through the
        # holder, a cycle through the C++ graph that Python's collector cannot see. Autograd
        # reattaches the saved tensor's grad_fn when it unpacks it.
        holder = _Holder(x.detach())
        self.holders.append(weakref.ref(holder))
        return holder

    def _unpack(self, holder: _Holder) -> Tensor:
        if self.running:  # an inner gradient g_t
            assert holder.x is not None
            return holder.x
        if holder.x is None:
            self._rebuild()
        x, holder.x = holder.x, None
        assert x is not None  # refilled by _rebuild (which checks the count)
        return x

    def _release(self) -> None:
        for ref in self.holders:
            holder = ref()
            if holder is not None:
                holder.x = None

    def _rebuild(self) -> None:
        previous = None if self.tape.rebuilt is None else self.tape.rebuilt()
        if previous is not None:
            previous._release()
        self.tape.rebuilt = weakref.ref(self)
        holders = [ref() for ref in self.holders]
        count = 0

        def pack(x: Tensor) -> _Holder:
            nonlocal count
            x = x.detach()  # as in _pack
            if count < len(holders) and (holder := holders[count]) is not None:
                holder.x = x
            count += 1
            return _Holder(x)  # the rerun's own inner gradients read it

        def detach(t: Any) -> Any:
            return t.detach().requires_grad_(t.requires_grad) if isinstance(t, Tensor) else t

        inputs = optree.tree_map(detach, self.inputs)
        with contextlib.ExitStack() as stack:  # the forward pass's random and autocast states
            stack.enter_context(torch.random.fork_rng(devices=self.devices))
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, _read))
            stack.enter_context(torch.enable_grad())
            for kind, enabled, dtype in self.autocast:
                stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled))
            torch.set_rng_state(self.rng)
            for d, state in zip(self.devices, self.cuda_rng, strict=True):
                torch.cuda.set_rng_state(state, d)
            self.fn(*inputs)
        if count != len(holders):
            raise RuntimeError(
                "adjoint='checkpoint': rerunning a segment in the backward pass saved "
                f"{count} tensors where the forward pass saved {len(holders)}; the inner loss "
                "must compute the same operations when called again on the same inputs."
            )


def checkpointed_loop(
    loss_fn: Callable[..., Tensor],
    optimizer: GradientTransformation,
    lengths: list[int],
    *,
    first_order: bool,
    in_dims: int | tuple[Any, ...] | None = None,
    batched: bool = False,
    chunk_size: int | None = None,
) -> Callable[..., tuple[Params, OptState, Tensor]]:
    r"""``run(params, *args) -> (params_T, state_T, losses)`` with each segment checkpointed.

    Each segment of ``n`` steps is a :class:`_Segment` on ``segment(n, params, state, *args)``:
    the forward pass keeps only the segment's inputs (:math:`\theta`, the optimizer state and the
    arguments), outputs and graph structure, and the backward pass reruns the segment to refill
    the graph's saved tensors. Tensors the loss or the optimizer capture from outside (a
    regularization strength, a learnable learning rate) are reached by the ordinary graph, as
    with a non-reentrant checkpoint: only the saved tensors are dropped.

    The gradients come from :func:`torch.autograd.grad` (``create_graph=True``): ``torch.func``
    transforms refuse to run under saved-tensor hooks. For a batch of
    tasks, the loss is ``vmap(loss_fn)`` summed over tasks; task :math:`b`'s loss depends on its
    own parameters only, so the gradient of the sum with respect to the stacked parameters is the
    stack of the per-task gradients, and the update runs under ``vmap``.
    """

    def losses_of(params: Params, args: tuple[Any, ...]) -> Tensor:
        if not batched:
            return loss_fn(params, *args)
        dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
        return torch.func.vmap(loss_fn, in_dims=(0, *dims), chunk_size=chunk_size)(params, *args)

    def update(grads: Params, state: OptState, params: Params) -> tuple[Params, OptState]:
        def one(g: Params, s: OptState, p: Params) -> tuple[Params, OptState]:
            return optimizer.update(g, s, params=p, inplace=False)

        if batched:
            return torch.func.vmap(one, chunk_size=chunk_size)(grads, state, params)
        return one(grads, state, params)

    def segment(n: int, params: Params, state: OptState, *args: Any) -> Any:
        losses = []
        for _ in range(n):
            leaves, spec = optree.tree_flatten(params)
            # A leaf that requires no grad (no meta-gradient wanted) still needs one for g_t.
            leaves = [p if p.requires_grad else p.detach().requires_grad_() for p in leaves]
            params = optree.tree_unflatten(spec, leaves)
            loss = losses_of(params, args)
            grads = torch.autograd.grad(
                loss.sum() if batched else loss,
                leaves,
                create_graph=not first_order,
                retain_graph=True,
                materialize_grads=True,
            )
            updates, state = update(optree.tree_unflatten(spec, list(grads)), state, params)
            params = optree.tree_map(torch.add, params, updates)
            losses.append(loss)
        return params, state, torch.stack(losses)

    def run(params: Params, *args: Any) -> tuple[Params, OptState, Tensor]:
        if batched:
            dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
            tasks = torch.func.vmap(lambda *a: torch.zeros(()), in_dims=dims)(*args).numel()
            params = optree.tree_map(lambda p: p.expand(tasks, *p.shape), params)
            state = torch.func.vmap(optimizer.init)(params)
        else:
            state = optimizer.init(params)
        losses = []
        tape = _Tape()
        for n in lengths:
            params, state, seg_losses = _Segment(segment, (n, params, state, *args), tape).run()
            losses.append(seg_losses)
        stacked = torch.cat(losses)
        return params, state, stacked.movedim(0, -1) if batched else stacked

    return run
