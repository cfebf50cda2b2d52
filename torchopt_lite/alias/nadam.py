"""NAdam."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation, GradientTransformation
from torchopt_lite.transform.add_decayed_weights import Mask, add_decayed_weights
from torchopt_lite.transform.scale_by_nadam import scale_by_nadam
from torchopt_lite.typing import ScalarOrSchedule


def nadam(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""NAdam: Adam with Nesterov momentum, as ``torch.optim.NAdam``.

    .. math::
        \mu_t &= \beta_1 \bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \Delta_t &= \Bigl(\frac{1-\mu_t}{1-\prod_{i\le t}\mu_i}\, g_t
        + \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i}\, m_t\Bigr)
        \Big/ \Bigl(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\Bigr) \\
        u_t &= -\alpha_t \Delta_t \quad \text{with } g_t \leftarrow \pm g_t + \lambda\theta_{t-1},
        \qquad\text{or}\qquad
        u_t = -\alpha_t (\Delta_t + \lambda\theta_{t-1}) \quad \text{(decoupled)}

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`, an L2 penalty added to the gradient, or with
            ``decoupled_weight_decay`` a decay of the parameters (NAdamW).
        momentum_decay: :math:`\psi \ge 0`, how fast :math:`\mu_t` warms up to :math:`\beta_1`;
            ``math.inf`` gives :math:`\mu_t = \beta_1` at every step (Optax's ``nadam``).
        decoupled_weight_decay: decay the parameters (AdamW style) instead of the gradient;
            :func:`~torchopt_lite.alias.nadamw.nadamw` also takes a ``mask``.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = nadam(lr=2e-3)
        >>> p = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0021, -0.0021])

    References:
        Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Note:
        ``optax.nadam`` is Dozat's simplified form with a constant :math:`\mu_t = \beta_1`:
        :math:`u_t = -\alpha_t (\beta_1 m_t / (1-\beta_1^{t+1}) + (1-\beta_1) g_t / (1-\beta_1^t))
        / (\sqrt{\hat v_t} + \epsilon)`. ``momentum_decay=0`` does not give it (it makes
        :math:`\mu_t = \beta_1 / 2`); ``momentum_decay=math.inf`` does.
    """
    return _nadam_chain(
        "nadam",
        lr,
        betas,
        eps,
        weight_decay,
        momentum_decay,
        decoupled_weight_decay,
        None,
        maximize,
        moment_requires_grad,
    )


def _nadam_chain(
    caller: str,
    lr: ScalarOrSchedule,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    mask: Mask | None,
    maximize: bool,
    moment_requires_grad: bool,
) -> ChainedGradientTransformation:
    """NAdam's chain, validated under ``caller``'s name (shared by ``nadam`` and ``nadamw``)."""
    b1, b2 = check_betas(caller, betas)
    check_nonnegative(caller, "lr", lr, what="learning rate")
    check_nonnegative(caller, "eps", eps, what="epsilon")
    check_nonnegative(caller, "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative(caller, "momentum_decay", momentum_decay, what="momentum_decay")
    coupled = 0.0 if decoupled_weight_decay else weight_decay
    parts: tuple[GradientTransformation, ...] = (
        flip_sign_and_add_weight_decay(weight_decay=coupled, maximize=maximize),
        scale_by_nadam(b1, b2, eps, momentum_decay, moment_requires_grad=moment_requires_grad),
    )
    if decoupled_weight_decay:
        parts += (add_decayed_weights(weight_decay, mask),)
    return ChainedGradientTransformation(*parts, scale_by_neg_lr(lr))
