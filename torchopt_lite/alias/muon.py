"""Muon."""

from __future__ import annotations

import torch

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_muon import NS_COEFFICIENTS, scale_by_muon, validate
from torchopt_lite.typing import ScalarOrSchedule


def muon(
    lr: ScalarOrSchedule = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    ns_dtype: torch.dtype | None = torch.bfloat16,
    adam_fallback: bool = True,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    adam_weight_decay: float = 0.0,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Muon: momentum orthogonalized by Newton-Schulz on matrices, as ``torch.optim.Muon``.

    For a 2-D parameter :math:`\theta \in \mathbb{R}^{A \times B}`:

    .. math::
        B_t &= \mu B_{t-1} + (1 - \mu) g_t, \qquad
        \tilde B_t = \begin{cases} \mu B_t + (1 - \mu) g_t & \text{nesterov} \\
        B_t & \text{otherwise} \end{cases} \\
        X_0 &= \tilde B_t / \max(\|\tilde B_t\|_F, \epsilon), \qquad
        X_{j+1} = a X_j + (b A_j + c A_j^2) X_j, \quad A_j = X_j X_j^\top
        \quad (j < k) \\
        \theta_t &= \theta_{t-1} - \alpha \lambda \theta_{t-1} - \alpha\, r(A, B)\, X_k

    with :math:`X` taken in its wide orientation (transposed when :math:`A > B`, and back) and
    :math:`r = \sqrt{\max(1, A/B)}` (``adjust_lr_fn=None`` or ``"original"``) or
    :math:`r = 0.2 \sqrt{\max(A, B)}` (``"match_rms_adamw"``). Every other leaf (vectors,
    scalars, convolution kernels) takes an AdamW step with ``adam_betas``, ``adam_eps`` and
    ``adam_weight_decay`` and the same :math:`\alpha`, as Optax's ``muon`` does.

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        weight_decay: decoupled weight decay :math:`\lambda` of the matrices.
        momentum: :math:`\mu`.
        nesterov: orthogonalize the Nesterov look-ahead :math:`\mu B_t + (1-\mu) g_t`.
        ns_coefficients: the quintic's :math:`(a, b, c)`.
        eps: :math:`\epsilon` of the Frobenius normalization.
        ns_steps: the number :math:`k` of Newton-Schulz iterations, in ``[0, 100)``.
        adjust_lr_fn: ``None``/``"original"`` or ``"match_rms_adamw"`` (see above).
        ns_dtype: the precision of the Newton-Schulz iteration: ``torch.bfloat16`` as
            ``torch.optim.Muon``; ``None`` runs it in each matrix's own dtype (Optax's choice,
            and what exact gradients through the step need).
        adam_fallback: step non-matrix leaves with AdamW; ``False`` raises ``ValueError`` for
            them (``torch.optim.Muon``'s contract).
        adam_betas: AdamW's :math:`(\beta_1, \beta_2)` for non-matrix leaves.
        adam_eps: AdamW's :math:`\epsilon` for non-matrix leaves.
        adam_weight_decay: AdamW's decoupled weight decay for non-matrix leaves.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Returns:
        A :class:`~torchopt_lite.base.ChainedGradientTransformation`.

    Example:
        >>> opt = muon(lr=0.02)
        >>> params = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
        >>> state = opt.init(params)
        >>> grads = {"w": torch.eye(2, 3), "b": torch.ones(3)}
        >>> updates, state = opt.update(grads, state, params=params)
        >>> updates["w"].shape, updates["b"]
        (torch.Size([2, 3]), tensor([-0.0200, -0.0200, -0.0200]))

    References:
        Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024,
        https://kellerjordan.github.io/posts/muon/.
        Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982, 2025.

    Note:
        Complex leaves raise ``ValueError`` (before anything is written), as in
        ``torch.optim.Muon``. Matrices of one shape are orthogonalized as one batch. With the
        default ``ns_dtype=torch.bfloat16`` the steps equal ``torch.optim.Muon``'s; in
        ``torch.optim.Muon`` every parameter must be 2-D. Optax's ``contrib.muon`` differs:
        bias-corrected momentum (the Nesterov mix weighs :math:`g_t` by
        :math:`1/(1-\mu^t)`), :math:`X_0 = \tilde B / (\|\tilde B\|_F + \epsilon)`,
        :math:`r = \sqrt{\max(1, B/A)}` for its ``(in, out)`` weights, the iteration in the
        leaf's dtype, a Nesterov AdamW fallback; with ``nesterov=False``, ``eps=0`` and
        ``ns_dtype=None`` the two agree on transposed matrices.
    """
    check_nonnegative("muon", "lr", lr, what="learning rate")
    validate(
        "muon", momentum, eps, weight_decay, ns_coefficients, ns_steps, adjust_lr_fn, ns_dtype,
        adam_betas, adam_eps, adam_weight_decay,
    )  # fmt: skip
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_muon(
            momentum,
            nesterov,
            ns_coefficients,
            eps,
            ns_steps,
            adjust_lr_fn,
            weight_decay,
            ns_dtype=ns_dtype,
            adam_fallback=adam_fallback,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            moment_requires_grad=moment_requires_grad,
        ),
        scale_by_neg_lr(lr),
    )
