"""Prodigy."""

from __future__ import annotations

from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_prodigy import scale_by_prodigy, validate
from torchopt_lite.typing import ScalarOrSchedule


def prodigy(
    lr: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Prodigy: AdamW whose step size is learned, an estimate of the distance to the solution.

    With :math:`\gamma_k` the learning rate (schedule) and :math:`d_0` = ``estim_lr0``:

    .. math::
        \eta_k &= d_k \gamma_k \sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1}) \\
        m_{k+1} &= \beta_1 m_k + (1 - \beta_1) d_k g_k, \qquad
        v_{k+1} = \beta_2 v_k + (1 - \beta_2) d_k^2 g_k^2 \\
        r_{k+1} &= \beta_3 r_k + (d_k / d_0)\, \eta_k \langle g_k, x_0 - x_k \rangle, \qquad
        s_{k+1} = \beta_3 s_k + (d_k / d_0)\, \eta_k g_k \\
        d_{k+1} &= \max\big(d_k,\; c\, r_{k+1} / \|s_{k+1}\|_1\big) \\
        x_{k+1} &= x_k - \eta_k \big(m_{k+1} / (\sqrt{v_{k+1}} + d_{k+1} \epsilon)
        + \lambda x_k\big)

    (with ``safeguard_warmup``, :math:`s` adds :math:`(d_k / d_0)\, d_k g_k`). The inner products
    and the norm run over all leaves; :math:`d_k` and :math:`r_k` are 0-d tensors in the state
    (no host synchronization).

    Args:
        lr: the schedule :math:`\gamma_k` around 1 (float, 0-d tensor or schedule).
        betas: AdamW's :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        beta3: :math:`\beta_3` of the estimate; ``None`` means :math:`\sqrt{\beta_2}`.
        eps: :math:`\epsilon` (scaled by :math:`d_{k+1}`).
        estim_lr0: the initial (under-)estimate :math:`d_0 > 0`.
        estim_lr_coef: :math:`c`, multiplies every estimate.
        weight_decay: decoupled weight decay :math:`\lambda`.
        safeguard_warmup: leave :math:`\gamma_k` out of :math:`s` (for warm-up schedules).
        maximize: ascend instead of descend.
        moment_requires_grad: create ``mu``, ``nu`` and ``grad_sum`` with ``requires_grad=True``.

    Returns:
        A :class:`~torchopt_lite.base.ChainedGradientTransformation`; ``update`` needs
        ``params``.

    Example:
        >>> opt = prodigy(lr=1.0)
        >>> params = {"w": torch.tensor([1.0, -2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([0.5, -1.0])}, state, params=params)
        >>> state[1].estim_lr  # d grows once the iterates move away from x_0
        tensor(1.0000e-06, dtype=torch.float64)

    References:
        Mishchenko and Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
        ICML 2024, arXiv:2306.06101.

    Note:
        Optax's ``contrib.prodigy`` computes the same steps, with :math:`d_k` in the lowest
        dtype of the parameters (here float64, float32 on MPS). Where every gradient so far is
        0 (so :math:`\|s\|_1 = 0`) :math:`d` is kept; Optax's estimate is then NaN. The
        authors' PyTorch code skips such a step, and has bias correction off by default
        (always on here and in Optax) and an optional ``growth_rate`` (unbounded here).
        ``params0`` holds a copy of the initial parameters (``init`` under autograd records it,
        so gradients reach the initial parameters).
    """
    validate("prodigy", lr, betas, beta3, eps, estim_lr0, estim_lr_coef, weight_decay)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_prodigy(
            lr,
            betas,
            beta3,
            eps,
            estim_lr0,
            estim_lr_coef,
            weight_decay,
            safeguard_warmup,
            moment_requires_grad=moment_requires_grad,
        ),
    )
