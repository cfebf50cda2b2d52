"""SGD with annealed Gaussian gradient noise."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_noise import add_noise
from torchopt_lite.typing import ScalarOrSchedule


def noisy_sgd(
    lr: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    seed: int = 0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""Noisy SGD: SGD on gradients plus Gaussian noise of decaying variance.

    .. math::
        u_t = -\alpha_t \bigl(g_t + \lambda \theta_{t-1} + \sigma_t \xi_t\bigr), \qquad
        \sigma_t^2 = \frac{\eta}{(1 + t)^\gamma}, \qquad \xi_t \sim \mathcal N(0, I)

    for :math:`t = 0, 1, \dots` the number of earlier steps. The noise comes from a
    counter-based generator keyed by ``seed`` and the step count held in the state (see
    :func:`~torchopt_lite.transform.add_noise.add_noise`): the same state gives the same noise,
    in place or out of place, eagerly, compiled or under ``vmap`` (stack states made with
    different seeds to draw independent noise per task). A complex leaf gets independent
    noise of variance :math:`\sigma_t^2` in its real and its imaginary part.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule ``count -> lr``).
        eta: initial variance :math:`\eta` of the noise.
        gamma: decay exponent :math:`\gamma` of the variance.
        seed: the key of the noise (an int, stored in the state).
        weight_decay: coupled L2 penalty :math:`\lambda`.
        maximize: ascend the objective instead of descending it.

    Example:
        >>> opt = noisy_sgd(lr=0.1, eta=0.0)  # no noise: plain SGD
        >>> updates, _ = opt.update(torch.tensor([1.0, -2.0]), opt.init(torch.zeros(2)))
        >>> updates
        tensor([-0.1000,  0.2000])

    References:
        Neelakantan et al., `Adding Gradient Noise Improves Learning for Very Deep Networks
        <https://arxiv.org/abs/1511.06807>`_, 2015.

    Note:
        ``torch.optim`` has no noisy SGD. The math and defaults are ``optax.noisy_sgd``'s, but
        not its random numbers: Optax splits a JAX key each step, this draws from a hash of
        ``(seed, count, leaf index, element index)``. The leaf index counts the leaves that have
        a gradient at that step.
    """
    check_nonnegative("noisy_sgd", "lr", lr, what="learning rate")
    check_nonnegative("noisy_sgd", "eta", eta)
    check_nonnegative("noisy_sgd", "gamma", gamma)
    check_nonnegative("noisy_sgd", "weight_decay", weight_decay, what="weight_decay")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"noisy_sgd: seed must be an int; got {type(seed).__name__}.")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        add_noise(eta, gamma, seed),
        scale_by_neg_lr(lr),
    )
