"""Adafactor."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale import scale
from torchopt_lite.transform.scale_by_factored_rms import scale_by_factored_rms
from torchopt_lite.transform.scale_by_relative_step import scale_by_relative_step
from torchopt_lite.typing import ScalarOrSchedule


def adafactor(
    lr: ScalarOrSchedule = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Adafactor: factored second moments and relative step sizes, as ``torch.optim.Adafactor``.

    For a leaf of two or more dimensions the second moment is kept as row and column factors
    of its last two axes; a vector or scalar leaf keeps a full EMA:

    .. math::
        \hat\beta_t = 1 - t^{\tau}, \quad \rho_t = \min(\gamma, 1/\sqrt{t}), \quad
        a_t = \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\, \rho_t,

        R_t = \hat\beta_t R_{t-1} + (1-\hat\beta_t)\, \mathrm{mean}_{-1}(g_t^2), \quad
        C_t = \hat\beta_t C_{t-1} + (1-\hat\beta_t)\, \mathrm{mean}_{-2}(g_t^2), \quad
        \hat V_t = \frac{R_t C_t}{\max(\mathrm{mean}_{-2}(R_t), \epsilon_1)},

        U_t = \frac{g_t}{\sqrt{\max(\hat V_t, \epsilon_1^2)}}, \qquad
        u_t = -a_t\, \frac{U_t}{\max(1, \mathrm{RMS}(U_t) / d)} - \gamma \lambda \theta_{t-1}.

    Args:
        lr: :math:`\gamma`, the cap of the relative step (float, 0-d tensor or schedule of the
            count), also the factor of the weight decay.
        beta2_decay: :math:`\tau \le 0`, the decay exponent of :math:`\hat\beta_t`.
        eps: :math:`(\epsilon_1, \epsilon_2)`; :math:`\epsilon_1` ``None`` is the leaf dtype's
            machine epsilon.
        d: clipping threshold :math:`d \ge 1` of the update's RMS.
        weight_decay: decoupled weight decay :math:`\lambda`.
        maximize: ascend instead of descend (the gradient's sign is flipped first).
        moment_requires_grad: create the factors with ``requires_grad=True``.

    Example:
        >>> opt = adafactor(lr=1e-2)
        >>> params = {"w": torch.ones(2, 3)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 3)}, state, params=params)

    References:
        Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        ICML 2018. https://arxiv.org/abs/1804.04235

    Note:
        ``torch.optim.Adafactor``'s math, arguments and defaults; ``foreach`` is not an
        argument (the dispatch picks the rendering). Complex leaves are rejected with a
        ``ValueError`` before anything is written (``torch.optim.Adafactor`` raises
        ``RuntimeError``). With ``eps[0] = None``, :math:`\epsilon_1` is each leaf's own
        dtype's epsilon; ``torch.optim.Adafactor`` takes the first parameter's for all (they
        differ only with mixed dtypes). ``optax.adafactor`` differs: it factors only leaves
        whose two largest axes are at least ``min_dim_size_to_factor`` (128), over those two
        axes; it adds ``eps=1e-30`` to :math:`g^2` instead of clamping; it computes the decay
        :math:`1 - t^{-0.8}` in float32; it scales by ``lr`` itself (no
        :math:`\min(\gamma, 1/\sqrt t)`), and can add momentum and a weight-decay mask. Its
        pieces with torch's choices (every matrix factored, the decay in float64, the relative
        step as a schedule) give this alias's steps (checked in the tests).
    """
    check_nonnegative("adafactor", "lr", lr, what="learning rate")
    check_nonnegative("adafactor", "weight_decay", weight_decay, what="weight_decay")
    if not isinstance(eps, tuple | list) or len(eps) != 2:
        raise TypeError(f"adafactor: eps must be a pair (eps1 or None, eps2); got {eps!r}.")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_factored_rms(beta2_decay, eps[0], d, moment_requires_grad=moment_requires_grad),
        scale_by_relative_step(lr, eps[1], weight_decay),
        scale(-1.0),
    )
