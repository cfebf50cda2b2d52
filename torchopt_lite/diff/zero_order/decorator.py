"""The ``zero_order`` decorator: gradients of black-box scalar functions by sampling."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

import optree
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torchopt_lite.diff.zero_order import _estimators, _flat
from torchopt_lite.typing import Numeric, Samplable, SampleFunc

Method: TypeAlias = Literal[
    "naive", "forward", "antithetic", "spsa", "forward_difference", "central_difference"
]
Evaluation: TypeAlias = Literal["sequential", "batched", "vmap"]
FitnessShaping: TypeAlias = Literal["centered_rank"]


class WrappedSamplable(Samplable):
    """A sample function ``sample_fn(sample_shape) -> Tensor`` seen as a :class:`Samplable`."""

    def __init__(self, sample_fn: SampleFunc) -> None:
        self.sample_fn = sample_fn

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor | Sequence[Numeric]:  # noqa: B008
        """Return ``sample_fn(sample_shape)``."""
        return self.sample_fn(sample_shape)


class _Settings(NamedTuple):
    """Everything :func:`zero_order` validated once, at decoration time."""

    estimator: _estimators.Estimator
    sampler: Samplable | str | None  # "normal" / "rademacher": drawn from the generator directly
    argnums: tuple[int, ...]
    num_samples: int
    sigma: float
    evaluation: str
    baseline: bool
    fitness_shaping: str | None
    generator: torch.Generator | None


class _Call(NamedTuple):
    """One call of the decorated function: the non-tensor input of :class:`_ZeroOrder`."""

    fn: Callable[..., Tensor]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    argnums: tuple[int, ...]  # non-negative, in the order given
    treespec: optree.PyTreeSpec  # of the tuple of differentiated arguments
    layout: _flat.Layout
    settings: _Settings

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
                f"zero_order: `output` must be a tensor; {_name(self.fn)} returned "
                f"{type(out).__name__}."
            )
        if out.dim() != 0:
            raise RuntimeError(
                f"zero_order: `output` must be a scalar tensor; {_name(self.fn)} returned shape "
                f"{tuple(out.shape)}. Reduce it to a scalar, e.g. with .sum() or .mean()."
            )
        if not out.is_floating_point():
            raise RuntimeError(
                f"zero_order: `output` must be a floating-point scalar tensor; {_name(self.fn)} "
                f"returned dtype {out.dtype}. Cast it with .double() or .float()."
            )
        return out

    def gradient(self, leaves: Sequence[Tensor], f_theta: Tensor) -> list[Tensor]:
        """The estimated gradient with respect to each leaf."""
        s, layout = self.settings, self.layout
        noise = None
        if isinstance(s.sampler, str):
            noise = _flat.standard_noise(s.sampler, layout, s.num_samples, s.generator)
        elif s.sampler is not None:
            noise = _flat.draw_noise(
                s.sampler.sample, layout, s.num_samples, s.generator, "zero_order"
            )
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


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


def _check_argnums(argnums: Any) -> tuple[int, ...]:
    if isinstance(argnums, int) and not isinstance(argnums, bool):
        return (argnums,)
    if (
        isinstance(argnums, tuple | list)
        and argnums
        and all(isinstance(i, int) and not isinstance(i, bool) for i in argnums)
    ):
        return tuple(argnums)
    if isinstance(argnums, tuple | list) and not argnums:
        raise ValueError("zero_order: argnums must name at least one argument; got ().")
    raise TypeError(f"zero_order: argnums must be an int or a tuple of ints; got {argnums!r}.")


def _resolve_argnums(
    argnums: tuple[int, ...], nargs: int, fn: Callable[..., Any]
) -> tuple[int, ...]:
    """Non-negative argnums for a call with ``nargs`` positional arguments."""
    if any(not -nargs <= i < nargs for i in argnums):
        raise ValueError(
            f"zero_order: argnums={argnums} is out of range for {_name(fn)} called with {nargs} "
            "positional argument(s); argnums index the positional arguments (keyword arguments "
            "are never differentiated)."
        )
    resolved = tuple(i % nargs for i in argnums)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"zero_order: argnums={argnums} names the same argument twice.")
    return resolved


def _is_standard_normal(distribution: Any) -> bool:
    """Whether ``distribution`` is exactly ``torch.distributions.Normal(0.0, 1.0)``."""
    if type(distribution) is not torch.distributions.Normal or distribution.batch_shape:
        return False
    return bool(distribution.loc == 0) and bool(distribution.scale == 1)


def _settings(
    caller: str,
    distribution: Any,
    method: Any,
    argnums: Any,
    num_samples: Any,
    sigma: Any,
    evaluation: Any,
    baseline: Any,
    fitness_shaping: Any,
    generator: Any,
) -> _Settings:
    """Validate the options of :func:`zero_order` (and its kin) once, before any call."""
    if method not in _estimators.ESTIMATORS:
        raise ValueError(
            f"{caller}: method must be one of {', '.join(map(repr, _estimators.ESTIMATORS))}; "
            f"got {method!r}."
        )
    estimator = _estimators.ESTIMATORS[method]
    sampler: Samplable | str | None
    if distribution is None:
        sampler = "rademacher" if method == "spsa" else "normal"
    elif _is_standard_normal(distribution):
        sampler = "normal"  # the same distribution, drawn with randn (faster; uses the generator)
    elif isinstance(distribution, Samplable):
        sampler = distribution
    elif callable(distribution):
        sampler = WrappedSamplable(distribution)
    else:
        raise TypeError(
            f"{caller}: `distribution` must be a callable or an instance of `Samplable` "
            "(an object with .sample(sample_shape), e.g. torch.distributions.Normal(0.0, "
            f"1.0)), or None; got {type(distribution).__name__}."
        )
    if not estimator.random:
        sampler = None
    argnums = _check_argnums(argnums)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool):
        raise TypeError(f"{caller}: num_samples must be an int; got {num_samples!r}.")
    if num_samples < 1:
        raise ValueError(f"{caller}: num_samples must be >= 1; got {num_samples}.")
    if not isinstance(sigma, int | float) or isinstance(sigma, bool):
        raise TypeError(f"{caller}: sigma must be a positive float; got {sigma!r}.")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{caller}: sigma must be positive and finite; got {sigma}.")
    if evaluation not in _flat.EVALUATIONS:
        raise ValueError(
            f"{caller}: evaluation must be one of {', '.join(map(repr, _flat.EVALUATIONS))}; "
            f"got {evaluation!r}."
        )
    if baseline and not estimator.random:
        raise ValueError(f"{caller}: baseline=True needs a sampling method; got {method!r}.")
    if baseline and num_samples < 2:
        raise ValueError(
            f"{caller}: baseline=True needs num_samples >= 2 (the baseline of a sample is the "
            f"mean of the others); got num_samples={num_samples}."
        )
    if fitness_shaping not in (None, "centered_rank"):
        raise ValueError(
            f"{caller}: fitness_shaping must be None or 'centered_rank'; got {fitness_shaping!r}."
        )
    if fitness_shaping is not None and not estimator.shapeable:
        raise ValueError(
            f"{caller}: fitness_shaping={fitness_shaping!r} works with 'naive', 'antithetic' "
            f"and 'spsa' (ranks of one batch of values); got method={method!r}."
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{caller}: generator must be a torch.Generator or None; "
            f"got {type(generator).__name__}."
        )
    return _Settings(
        estimator,
        sampler,
        argnums,
        num_samples,
        float(sigma),
        evaluation,
        bool(baseline),
        fitness_shaping,
        generator,
    )


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
    settings = _settings(
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


def _decorate(fn: Callable[..., Tensor], *, settings: _Settings) -> Callable[..., Tensor]:
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
                f"zero_order: the arguments argnums={settings.argnums} of {_name(fn)} must be "
                f"pytrees of floating-point tensors; got {got}."
            )
        layout = _flat.layout_of(leaves)
        call = _Call(fn, args, kwargs, argnums, treespec, layout, settings)
        return _ZeroOrder.apply(call, *leaves)

    return apply


def _describe(x: Any) -> str:
    return f"Tensor with dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
