"""Muon's rescaling: momentum orthogonalized by a Newton-Schulz iteration (AdamW elsewhere)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import (
    REAL_LEAVES_ONLY,
    check_betas,
    check_nonnegative,
    coefficient,
)
from torchopt_lite._dispatch import Facts, Leafwise, state_check
from torchopt_lite._moments import adam_direction, ema, ema_sq, next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic, as torch.optim.Muon
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


@register_state_type
class ScaleByMuonState(NamedTuple):
    """State of :func:`scale_by_muon`.

    ``mu``: the momentum buffer of a matrix, Adam's first moment of another leaf; ``nu``: Adam's
    second moment of a non-matrix leaf (an empty tensor for a matrix); the step ``count``.
    """

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def newton_schulz(
    xs: Sequence[Tensor],
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = 5,
    eps: float = 1e-7,
    dtype: torch.dtype | None = None,
) -> list[Tensor]:
    r""":math:`\mathrm{NS}^{(a,b,c)}_k` of each matrix: new tensors in the matrices' dtypes.

    .. math::
        X_0 = G / \max(\|G\|_F, \epsilon), \qquad
        X_{j+1} = a X_j + (b A_j + c A_j^2) X_j, \quad A_j = X_j X_j^\top

    on the wide orientation of :math:`G` (transposed when it has more rows than columns, and
    back). Matrices of one shape, dtype and device go through the iteration as one batch
    (``baddbmm``); ``dtype`` (e.g. ``torch.bfloat16``, as ``torch.optim.Muon``) is the precision
    of the iteration, ``None`` the matrices' own.
    """
    a, b, c = coefficients
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, x in enumerate(xs):
        rows, cols = x.shape
        wide = (cols, rows) if rows > cols else (rows, cols)
        groups.setdefault((wide, x.dtype, x.device), []).append(i)
    out: list[Tensor] = list(xs)
    for index in groups.values():
        tall = [xs[i].shape[0] > xs[i].shape[1] for i in index]
        batch = torch.stack([xs[i].mT if t else xs[i] for i, t in zip(index, tall, strict=True)])
        if dtype is not None:
            batch = batch.to(dtype)
        norm = torch.linalg.vector_norm(batch, dim=(-2, -1), keepdim=True)
        batch = batch / norm.clamp(min=eps)
        for _ in range(steps):
            gram = batch @ batch.mT
            if isinstance(a, Tensor) or isinstance(b, Tensor) or isinstance(c, Tensor):
                # tensor coefficients (injected or learned): the same sums, in the graph
                poly = b * gram + c * (gram @ gram)
                batch = a * batch + poly @ batch
            else:
                poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
                batch = torch.baddbmm(batch, poly, batch, beta=a)
        for k, (i, t) in enumerate(zip(index, tall, strict=True)):
            o = batch[k].mT if t else batch[k]
            out[i] = o.to(xs[i].dtype)
    return out


def shape_ratio(shape: Sequence[int], adjust_lr_fn: str | None) -> float:
    r"""``torch.optim.Muon``'s learning-rate factor :math:`r` for an :math:`A \times B` matrix.

    :math:`\sqrt{\max(1, A/B)}` (``"original"``, ``None``) or :math:`0.2\sqrt{\max(A, B)}`
    (``"match_rms_adamw"``); 1 for an empty matrix.
    """
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols)) if cols else 1.0


def _check_leaves(leaves: Sequence[Tensor], complex_mask: Any, adam_fallback: bool) -> None:
    if complex_mask is not None and any(complex_mask):
        why = "Newton-Schulz orthogonalizes real matrices, as torch.optim.Muon"
        raise ValueError(REAL_LEAVES_ONLY.format(caller="muon", why=why))
    if adam_fallback:
        return
    for i, x in enumerate(leaves):
        if x.dim() != 2:
            raise ValueError(
                f"muon: leaf {i} has shape {tuple(x.shape)}; Muon orthogonalizes 2-D matrices "
                "only; pass adam_fallback=True to step the other leaves with AdamW, or give "
                "them to another optimizer."
            )


def validate(
    caller: str,
    momentum: float,
    eps: float,
    weight_decay: float,
    ns_coefficients: Any,
    ns_steps: Any,
    adjust_lr_fn: Any,
    ns_dtype: Any,
    adam_betas: Any,
    adam_eps: float,
    adam_weight_decay: float,
) -> tuple[tuple[float, float, float], float, float]:
    """Check Muon's hyperparameters (``ValueError``/``TypeError`` naming ``caller``).

    Returns:
        ``(a, b, c)`` and AdamW's ``b1, b2``.
    """
    check_nonnegative(caller, "momentum", momentum)
    check_nonnegative(caller, "eps", eps, what="epsilon")
    check_nonnegative(caller, "weight_decay", weight_decay, what="weight_decay")
    if not isinstance(ns_coefficients, tuple | list) or len(ns_coefficients) != 3:
        raise ValueError(
            f"{caller}: ns_coefficients must be a tuple (a, b, c) of three floats; "
            f"got {ns_coefficients!r}."
        )
    coefficients = (
        coefficient(ns_coefficients[0]),
        coefficient(ns_coefficients[1]),
        coefficient(ns_coefficients[2]),
    )
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int):
        raise TypeError(f"{caller}: ns_steps must be an int; got {type(ns_steps).__name__}.")
    if not 0 <= ns_steps < 100:
        raise ValueError(
            f"{caller}: ns_steps must be in [0, 100) (Number of steps must be less than 100, as "
            f"torch.optim.Muon); got {ns_steps}."
        )
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(
            f"{caller}: adjust_lr_fn must be None, 'original' or 'match_rms_adamw'; "
            f"got {adjust_lr_fn!r}."
        )
    if ns_dtype is not None and not (
        isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point
    ):
        raise TypeError(
            f"{caller}: ns_dtype must be a floating-point torch.dtype or None; got {ns_dtype!r}."
        )
    check_nonnegative(caller, "adam_eps", adam_eps, what="epsilon")
    check_nonnegative(caller, "adam_weight_decay", adam_weight_decay, what="weight_decay")
    b1, b2 = check_betas(caller, adam_betas)
    return coefficients, b1, b2


def scale_by_muon(
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    weight_decay: float = 0.0,
    *,
    ns_dtype: torch.dtype | None = torch.bfloat16,
    adam_fallback: bool = True,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    adam_weight_decay: float = 0.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Muon's direction (before :math:`-\alpha`) on matrices, AdamW's elsewhere (see :func:`muon`).

    .. math::
        B_t = \mu B_{t-1} + (1 - \mu) g_t, \quad
        \tilde B_t = \mu B_t + (1 - \mu) g_t \text{ (nesterov) or } B_t, \quad
        u_t = r(A, B)\, \mathrm{NS}(\tilde B_t) + \lambda \theta_{t-1}
    """
    caller = "scale_by_muon"
    coefficients, b1, b2 = validate(
        caller, momentum, eps, weight_decay, ns_coefficients, ns_steps, adjust_lr_fn, ns_dtype,
        adam_betas, adam_eps, adam_weight_decay,
    )  # fmt: skip

    def init(leaves: Any) -> ScaleByMuonState:
        _check_leaves(leaves, [x.is_complex() for x in leaves], adam_fallback)
        mu = tuple(torch.zeros_like(x, requires_grad=moment_requires_grad) for x in leaves)
        nu = tuple(x.new_zeros((0,)) if x.dim() == 2 else torch.zeros_like(x) for x in leaves)
        if moment_requires_grad:
            nu = tuple(x.requires_grad_() for x in nu)
        return ScaleByMuonState(mu=mu, nu=nu, count=zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByMuonState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByMuonState]:
        mu, nu, out = list(state.mu), list(state.nu), list(g)
        matrices = [i for i, x in enumerate(g) if x.dim() == 2]
        others = [i for i, x in enumerate(g) if x.dim() != 2]
        count = next_count(state.count, ops.inplace)
        if matrices:
            gm = [g[i] for i in matrices]
            buf = ema(ops, [mu[i] for i in matrices], gm, momentum)
            target = ops.lerp(gm, buf, momentum) if nesterov else buf
            o = newton_schulz(target, coefficients, ns_steps, eps, ns_dtype)
            u = ops.mul(o, [shape_ratio(x.shape, adjust_lr_fn) for x in gm])
            if not _kinds.is_zero(weight_decay):
                u = ops.add(u, [params[i] for i in matrices], alpha=weight_decay)
            for k, i in enumerate(matrices):
                mu[i], out[i] = buf[k], u[k]
        if others:
            go = [g[i] for i in others]
            m, v = ema(ops, [mu[i] for i in others], go, b1), [nu[i] for i in others]
            v = ema_sq(ops, v, go, b2)
            u = adam_direction(ops, go, m, v, count, b1, b2, adam_eps, 0.0)
            if not _kinds.is_zero(adam_weight_decay):
                u = ops.add(u, [params[i] for i in others], alpha=adam_weight_decay)
            for k, i in enumerate(others):
                mu[i], nu[i], out[i] = m[k], v[k], u[k]
        return out, ScaleByMuonState(mu=tuple(mu), nu=tuple(nu), count=count)

    mu_check = state_check(caller, ScaleByMuonState, "mu")

    def check(facts: Facts, state: Any) -> None:
        _check_leaves(facts.leaves, facts.complex, adam_fallback)
        mu_check(facts, state)
        if type(state.nu) is not tuple or len(state.nu) != len(facts.leaves):
            raise ValueError(
                f"{caller}: state.nu must be a tuple of {len(facts.leaves)} tensors; pass the "
                "state returned by this optimizer's init()."
            )

    decays = not (_kinds.is_zero(weight_decay) and _kinds.is_zero(adam_weight_decay))
    reads = caller if decays else ""
    return LeafwiseTransformation(Leafwise(init, update, check=check, needs_params=reads))
