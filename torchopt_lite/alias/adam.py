"""Adam."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_adam import scale_by_adam
from torchopt_lite.typing import ScalarOrSchedule


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    eps_root: float = 0.0,
    moment_requires_grad: bool = False,
    maximize: bool = False,
    use_accelerated_op: bool = False,
) -> ChainedGradientTransformation:
    r"""Adam: steps scaled by bias-corrected first and second moment estimates.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        u_t &= -\alpha_t\, \hat m_t / (\sqrt{\hat v_t + \bar\epsilon} + \epsilon)

    Args:
        lr: step size :math:`\alpha_t`: a float, a 0-d tensor (learnable), or a schedule
            ``count -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        weight_decay: coupled L2 penalty :math:`\lambda` (added to the gradient).
        eps_root: :math:`\bar\epsilon`, added inside the square root (useful when
            differentiating through Adam, where :math:`\sqrt{\cdot}` at 0 has no derivative).
        moment_requires_grad: create the moments with ``requires_grad=True`` (meta-learning).
        maximize: ascend instead of descend.
        use_accelerated_op: accepted for TorchOpt compatibility; the fastest path is always
            taken (see the note).

    Returns:
        A :class:`~torchopt_lite.base.ChainedGradientTransformation`.

    Example:
        >>> params = {"w": torch.tensor([1.0, -1.0])}
        >>> opt = torchopt_lite.adam(lr=0.1)
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([0.5, -2.0])}, state)
        >>> torchopt_lite.apply_updates(params, updates)["w"]
        tensor([ 0.9000, -0.9000])

    References:
        Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Note:
        The dispatch runs the whole chain as one step where it can: in place (a float learning
        rate, ``eps_root=0``, contiguous float32/float64 leaves on a device torch has the kernel
        for) it is torch's fused Adam kernel; out of place (a float or tensor learning rate) one
        autograd node with a closed-form backward that is itself differentiable. Other inputs
        (strided or expanded leaves, float16/bfloat16, complex, a schedule, ``torch.func`` and
        ``torch.compile``) run the transforms with multi-tensor or per-leaf ops. Every path
        computes the same formula, so ``use_accelerated_op`` changes nothing.
    """
    b1, b2 = check_betas("adam", betas)
    check_nonnegative("adam", "lr", lr, what="learning rate")
    check_nonnegative("adam", "eps", eps, what="epsilon")
    check_nonnegative("adam", "weight_decay", weight_decay, what="weight_decay")
    del use_accelerated_op
    parts = (
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
    return ChainedGradientTransformation(*parts)
