"""The ``zero_order`` decorator: gradients of black-box scalar functions by sampling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

import optree
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torchopt_lite.diff.zero_order import _estimators, _flat
from torchopt_lite.diff.zero_order._options import Settings, fn_name, validate
from torchopt_lite.diff.zero_order._options import (
    WrappedSamplable as WrappedSamplable,  # TorchOpt path
)
from torchopt_lite.typing import Samplable, SampleFunc

Method: TypeAlias = Literal[
    "naive", "forward", "antithetic", "spsa", "forward_difference", "central_difference"
]
Evaluation: TypeAlias = Literal["sequential", "batched", "vmap"]
FitnessShaping: TypeAlias = Literal["centered_rank"]


class _Call(NamedTuple):
    """One call of the decorated function: the non-tensor input of :class:`_ZeroOrder`."""

    fn: Callable[..., Tensor]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    argnums: tuple[int, ...]  # non-negative, in the order given
    treespec: optree.PyTreeSpec  # of the tuple of differentiated arguments
    layout: _flat.Layout
    settings: Settings

    def value(self, leaves: Sequence[Tensor]) -> Tensor:
        """``fn`` with the differentiated arguments rebuilt from ``leaves``."""
        args = list(self.args)
        for i, arg in zip(self.argnums, optree.tree_unflatten(self.treespec, leaves), strict=True):
            args[i] = arg
        return self.fn(*args, **self.kwargs)

    def scalar(self, leaves: Sequence[Tensor]) -> Tensor:
        """:meth:`value`, checked to be a floating-point scalar tensor."""
        out = self.value(leaves)
        if not isinstance(out, Tensor):
            raise RuntimeError(
                f"zero_order: `output` must be a tensor; {fn_name(self.fn)} returned "
                f"{type(out).__name__}."
            )
        if out.dim() != 0:
            raise RuntimeError(
                f"zero_order: `output` must be a scalar tensor; {fn_name(self.fn)} returned shape "
                f"{tuple(out.shape)}. Reduce it to a scalar, e.g. with .sum() or .mean()."
            )
        if not out.is_floating_point():
            raise RuntimeError(
                f"zero_order: `output` must be a floating-point scalar tensor; {fn_name(self.fn)} "
                f"returned dtype {out.dtype}. Cast it with .double() or .float()."
            )
        return out

    def gradient(self, leaves: Sequence[Tensor], f_theta: Tensor) -> list[Tensor]:
        """The estimated gradient with respect to each leaf."""
        s, layout = self.settings, self.layout
        noise = _flat.noise(s.sampler, layout, s.num_samples, s.generator, "zero_order")
        call = self.value if s.evaluation == "batched" else self.scalar
        f = _flat.batch_evaluator(s.evaluation, layout, call, "zero_order")
        g = _estimators.estimate(
            s.estimator,
            f,
            _flat.ravel(layout, leaves),
            noise,
            s.sigma,
            f_theta.to(layout.dtype),
            baseline=s.baseline,
            fitness_shaping=s.fitness_shaping,
        )
        return _flat.unravel(layout, g)


class _ZeroOrder(torch.autograd.Function):
    """f(theta) forward; a sampled or finite-difference estimate of its gradient backward."""

    @staticmethod
    def forward(call: _Call, *leaves: Tensor) -> Tensor:
        return call.scalar(leaves)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.call = inputs[0]
        ctx.save_for_backward(*inputs[1:], output)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        *leaves, f_theta = ctx.saved_tensors
        grads = ctx.call.gradient(leaves, f_theta)
        return (None, *(g.mul(grad_output) for g in grads))


def _resolve_argnums(
    argnums: tuple[int, ...], nargs: int, fn: Callable[..., Any]
) -> tuple[int, ...]:
    """Non-negative argnums for a call with ``nargs`` positional arguments."""
    if any(not -nargs <= i < nargs for i in argnums):
        raise ValueError(
            f"zero_order: argnums={argnums} is out of range for {fn_name(fn)} called with {nargs} "
            "positional argument(s); argnums index the positional arguments (keyword arguments "
            "are never differentiated)."
        )
    resolved = tuple(i % nargs for i in argnums)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"zero_order: argnums={argnums} names the same argument twice.")
    return resolved


def zero_order(
    distribution: SampleFunc | Samplable | None,
    method: Method = "naive",
    argnums: int | tuple[int, ...] = (0,),
    num_samples: int = 1,
    sigma: float = 1.0,
    *,
    evaluation: Evaluation = "sequential",
    baseline: bool = False,
    fitness_shaping: FitnessShaping | None = None,
    generator: torch.Generator | None = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    r"""Return a decorator whose function's gradient is estimated from function values only.

    The decorated ``fn(*args) -> scalar`` runs as is in the forward pass; its backward pass
    estimates the gradient with respect to the arguments in ``argnums`` (pytrees of float
    tensors, flattened into one vector :math:`\theta \in \mathbb{R}^d`) from evaluations of
    ``fn`` at perturbed points. With :math:`\epsilon_k` drawn from ``distribution``
    (:math:`k = 1..K`, ``K = num_samples``) and :math:`f_k^\pm = f(\theta \pm \sigma\epsilon_k)`:

    .. math::
        \text{naive:}\quad \hat g = \frac{1}{K\sigma} \sum_k f_k^+\, \epsilon_k, \qquad
        \text{forward:}\quad \hat g = \frac{1}{K\sigma} \sum_k \bigl(f_k^+ - f(\theta)\bigr)
        \epsilon_k,

        \text{antithetic:}\quad \hat g = \frac{1}{2K\sigma} \sum_k (f_k^+ - f_k^-)\, \epsilon_k,
        \qquad \text{spsa:}\quad \hat g = \frac{1}{2K\sigma} \sum_k (f_k^+ - f_k^-)\,
        \epsilon_k^{-1}.

    For :math:`\epsilon \sim \mathcal N(0, I)` the first three are unbiased for the gradient of
    the Gaussian smoothing :math:`f_\sigma(\theta) = \mathbb E\, f(\theta + \sigma\epsilon)`
    (Stein's lemma). ``spsa`` (elementwise :math:`\epsilon^{-1}`) wants a Rademacher
    distribution (:math:`\pm 1`). The deterministic finite differences use the coordinate axes
    :math:`e_i` and step :math:`h` = ``sigma`` (``distribution`` and ``num_samples`` are unused):

    .. math::
        \text{forward\_difference:}\quad \hat g_i = \frac{f(\theta + h e_i) - f(\theta)}{h},
        \qquad \text{central\_difference:}\quad
        \hat g_i = \frac{f(\theta + h e_i) - f(\theta - h e_i)}{2h}.

    Options beyond TorchOpt: ``baseline=True`` replaces each sample's weight
    :math:`w_k` (the factor in front of :math:`\epsilon_k`) by
    :math:`w_k - \frac{1}{K-1}\sum_{j \ne k} w_j`, which removes the variance due to
    :math:`f(\theta)` and stays unbiased because the baseline does not depend on sample
    :math:`k`. ``fitness_shaping='centered_rank'`` replaces the values :math:`f_k^\pm` by their
    ranks among the batch mapped onto :math:`[-\tfrac12, \tfrac12]`: the estimate is then a
    scale-free ascent direction (invariant to monotone transforms of ``f``), no longer an
    unbiased gradient.

    Args:
        distribution: the perturbation distribution: an object with ``.sample(sample_shape)``
            (e.g. ``torch.distributions.Normal(0.0, 1.0)``) or a function
            ``sample_fn(sample_shape) -> Tensor``. It is called once per leaf per backward pass
            with ``sample_shape = (num_samples, *leaf.shape)`` and must return exactly that
            shape. It should have mean zero (and identity covariance for an unbiased scale).
            ``None`` means standard normal noise (Rademacher for ``'spsa'``), drawn with
            ``torch.randn`` on the parameters' device; ``Normal(0.0, 1.0)`` is recognized and
            drawn the same way. The finite-difference methods ignore it.
        method: ``'naive'``, ``'forward'``, ``'antithetic'`` (TorchOpt's), ``'spsa'``,
            ``'forward_difference'`` or ``'central_difference'``.
        argnums: index or indices of the positional arguments to differentiate. Other
            arguments (and all keyword arguments) are passed through and get no gradient.
        num_samples: :math:`K`, samples per backward pass (``antithetic`` and ``spsa`` use
            :math:`2K` evaluations, ``naive`` and ``forward`` :math:`K`).
        sigma: :math:`\sigma`, the perturbation scale, or the step :math:`h` of the finite
            differences (e.g. ``1e-6`` in float64). Must be positive.
        evaluation: how the perturbed points are evaluated: ``'sequential'`` (one call per
            point, as TorchOpt), ``'batched'`` (one call; ``fn`` declares it accepts the
            differentiated arguments with a leading batch dimension on every leaf and returns
            one value per row) or ``'vmap'`` (one call of ``torch.func.vmap(fn)``).
        baseline: subtract the leave-one-out mean of the sample weights (needs
            ``num_samples >= 2``; sampling methods only).
        fitness_shaping: ``None`` or ``'centered_rank'`` (``naive``, ``antithetic``, ``spsa``).
        generator: a ``torch.Generator`` that seeds the noise of every backward pass (drawn
            inside a fork of the global RNG, which is left untouched), for reproducible
            estimates. ``None`` samples from torch's global RNG.

    Returns:
        A decorator. The decorated function returns ``fn(*args, **kwargs)`` and its backward
        pass returns ``grad_output`` times the estimate.

    Example:
        >>> @torchopt_lite.diff.zero_order.zero_order(
        ...     torch.distributions.Normal(0.0, 1.0), method="antithetic", num_samples=1000,
        ...     sigma=0.1, evaluation="batched", generator=torch.Generator().manual_seed(0))
        ... def f(x):                      # called with x of shape (3,) or (M, 3)
        ...     return (x * x).sum(-1)
        >>> x = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
        >>> f(x).backward()
        >>> torch.allclose(x.grad, 2 * x.detach(), atol=0.5)   # exact gradient: 2x
        True

    Note:
        TorchOpt 0.7.3's ``'forward'`` multiplies by :math:`\sigma` instead of dividing and
        overwrites the :math:`f(\theta)` baseline after the first sample; ours implements the
        formula above. TorchOpt samples ``num_samples`` times with ``sample_shape =
        leaf.shape``; we sample once with ``(num_samples, *leaf.shape)`` (the same
        distribution for any i.i.d. sampler) and check the shape. The estimate itself is not
        differentiable: differentiating through it again raises (``once_differentiable``).
    """
    settings = validate(
        "zero_order",
        distribution,
        method,
        argnums,
        num_samples,
        sigma,
        evaluation,
        baseline,
        fitness_shaping,
        generator,
    )
    return functools.partial(_decorate, settings=settings)


def _decorate(fn: Callable[..., Tensor], *, settings: Settings) -> Callable[..., Tensor]:
    @functools.wraps(fn)
    def apply(*args: Any, **kwargs: Any) -> Tensor:
        argnums = _resolve_argnums(settings.argnums, len(args), fn)
        selected: Any = tuple(args[i] for i in argnums)
        leaves, treespec = optree.tree_flatten(selected)
        bad = [
            leaf for leaf in leaves if not (isinstance(leaf, Tensor) and leaf.is_floating_point())
        ]
        if bad or not leaves:
            got = "no tensors" if not leaves else f"a leaf of type {_describe(bad[0])}"
            raise TypeError(
                f"zero_order: the arguments argnums={settings.argnums} of {fn_name(fn)} must be "
                f"pytrees of floating-point tensors; got {got}."
            )
        layout = _flat.layout_of(leaves)
        call = _Call(fn, args, kwargs, argnums, treespec, layout, settings)
        return _ZeroOrder.apply(call, *leaves)

    return apply


def _describe(x: Any) -> str:
    return f"Tensor with dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
