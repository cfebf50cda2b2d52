"""NAdamW: NAdam with decoupled weight decay."""

from __future__ import annotations

from torchopt_lite.alias.nadam import _nadam_chain
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import Mask
from torchopt_lite.typing import ScalarOrSchedule


def nadamw(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    momentum_decay: float = 4e-3,
    *,
    mask: Mask | None = None,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""NAdamW: NAdam plus decoupled weight decay, as ``NAdam(decoupled_weight_decay=True)``.

    .. math::
        u_t = -\alpha_t \bigl(\Delta_t + \lambda \theta_{t-1}\bigr)

    with :math:`\Delta_t` NAdam's direction (see :func:`~torchopt_lite.alias.nadam.nadam`),
    computed from :math:`\pm g_t` without weight decay.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: decoupled decay :math:`\lambda`.
        momentum_decay: :math:`\psi`, see :func:`~torchopt_lite.alias.nadam.nadam`
            (``math.inf``: Optax's ``nadamw``).
        mask: a tree of bools (or a callable ``params -> tree``) selecting the leaves to decay.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = nadamw(lr=2e-3, weight_decay=1e-2)
        >>> p = {"w": torch.zeros(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0021, -0.0021])

    References:
        Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop; Loshchilov and
        Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Note:
        ``weight_decay`` defaults to Optax's ``1e-4`` (``torch.optim.NAdam`` has 0, which would
        make this plain NAdam). The ``lr``/``eps``/``momentum_decay`` defaults are
        ``torch.optim.NAdam``'s; ``optax.nadamw`` has :math:`\mu_t = \beta_1` (see
        :func:`~torchopt_lite.alias.nadam.nadam`).
    """
    return _nadam_chain(
        "nadamw",
        lr,
        betas,
        eps,
        weight_decay,
        momentum_decay,
        True,
        mask,
        maximize,
        moment_requires_grad,
    )
