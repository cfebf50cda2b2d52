"""``ZeroOrderGradientModule``: a module whose parameters get zero-order gradients."""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from torchopt_lite.diff.zero_order.decorator import (
    Evaluation,
    FitnessShaping,
    Method,
    zero_order,
)
from torchopt_lite.typing import Numeric, Samplable

_ENABLED = "__zero_order_gradients_enabled__"


def _trainable(module: nn.Module) -> tuple[list[list[str]], list[Tensor]]:
    """The parameters that require grad, each with every name it is registered under."""
    names: dict[int, list[str]] = {}
    params: dict[int, Tensor] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if p.requires_grad:
            names.setdefault(id(p), []).append(name)
            params[id(p)] = p
    return list(names.values()), list(params.values())


@contextlib.contextmanager
def _swapped(
    module: nn.Module, names: list[list[str]], tensors: Sequence[Tensor]
) -> Iterator[None]:
    """Let plain tensors stand in for the module's parameters while the body runs."""
    saved: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for group, tensor in zip(names, tensors, strict=True):
            for name in group:
                owner, _, attr = name.rpartition(".")
                slots = cast(dict[str, Any], module.get_submodule(owner)._parameters)
                saved.append((slots, attr, slots[attr]))
                slots[attr] = tensor
        yield
    finally:
        for slots, attr, old in reversed(saved):
            slots[attr] = old


def enable_zero_order_gradients(
    cls: type[ZeroOrderGradientModule],
    method: Method = "naive",
    num_samples: int = 1,
    sigma: float = 1.0,
    *,
    evaluation: Evaluation = "sequential",
    baseline: bool = False,
    fitness_shaping: FitnessShaping | None = None,
) -> type[ZeroOrderGradientModule]:
    r"""Make ``cls.forward`` a zero-order function of the module's trainable parameters.

    The forward pass runs ``cls.forward`` unchanged; the backward pass estimates the gradient
    with respect to every parameter that requires grad, perturbing them with noise from the
    instance's own ``sample(sample_shape)`` (see :func:`~torchopt_lite.diff.zero_order.zero_order`
    for the estimators and the options).

    Args:
        cls: a :class:`ZeroOrderGradientModule` subclass (changed in place).
        method: the estimator, as in :func:`~torchopt_lite.diff.zero_order.zero_order`.
        num_samples: samples per backward pass.
        sigma: the perturbation scale (or finite-difference step).
        evaluation: ``'sequential'``, ``'batched'`` or ``'vmap'``.
        baseline: leave-one-out baseline on the sample weights.
        fitness_shaping: ``None`` or ``'centered_rank'``.

    Returns:
        ``cls``.

    Raises:
        TypeError: if ``cls.forward`` is already enabled.
    """
    cls_forward = cls.forward
    if getattr(cls_forward, _ENABLED, False):
        raise TypeError(
            "enable_zero_order_gradients: Zero-order gradient estimation is already enabled for "
            f"the `forward` method of {cls.__qualname__}."
        )
    options: dict[str, Any] = {
        "method": method,
        "num_samples": num_samples,
        "sigma": sigma,
        "evaluation": evaluation,
        "baseline": baseline,
        "fitness_shaping": fitness_shaping,
    }
    zero_order(torch.zeros, **options)  # validate now, at class creation

    @functools.wraps(cls_forward)
    def forward(self: ZeroOrderGradientModule, *input: Any, **kwargs: Any) -> Tensor:
        names, params = _trainable(self)
        if not params:
            raise RuntimeError(
                f"{type(self).__qualname__}.forward: The module has no parameters that require "
                "grad; zero-order gradients are estimated with respect to them."
            )

        def fn(flat_params: tuple[Tensor, ...], *input: Any, **kwargs: Any) -> Tensor:
            with _swapped(self, names, flat_params):
                return cls_forward(self, *input, **kwargs)

        return zero_order(self, argnums=0, **options)(fn)(tuple(params), *input, **kwargs)

    setattr(forward, _ENABLED, True)
    cls.forward = forward  # type: ignore[method-assign]  # the point of this function
    return cls


class ZeroOrderGradientModule(nn.Module, Samplable):
    r"""Base class of modules whose ``forward`` gets zero-order gradients.

    A subclass implements ``forward(*input) -> scalar`` and ``sample(sample_shape)`` (the
    perturbation distribution) and chooses the estimator in its class statement; the gradient
    of the output is then estimated with respect to the module's parameters that require grad,
    by :func:`~torchopt_lite.diff.zero_order.zero_order`:

    .. math::
        \hat g = \frac{1}{K\sigma}\sum_{k=1}^K w\bigl(f(\theta \pm \sigma\epsilon_k)\bigr)\,
        \epsilon_k, \qquad \epsilon_k \sim \texttt{self.sample}.

    Class keyword arguments: ``method``, ``num_samples``, ``sigma`` (TorchOpt's) and the
    keyword-only ``evaluation``, ``baseline`` and ``fitness_shaping``.

    Example:
        >>> class Simulator(torchopt_lite.diff.zero_order.ZeroOrderGradientModule,
        ...                 method="antithetic", num_samples=256, sigma=0.1):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.x = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        ...     def forward(self, target):
        ...         return (self.x - target).square().sum()
        ...     def sample(self, sample_shape=torch.Size()):
        ...         return torch.randn(sample_shape)
        >>> sim = Simulator()
        >>> sim(torch.zeros(2)).backward()
        >>> torch.allclose(sim.x.grad, torch.tensor([2.0, -2.0]), atol=0.5)
        True

    ``forward`` and ``sample`` are abstract: a subclass that lacks one cannot be instantiated.

    Note:
        TorchOpt perturbs every parameter; we perturb only those that require grad (frozen
        ones keep their values). A subclass of a subclass that does not define ``forward``
        gets the parent's ``forward`` with its own class options (TorchOpt raises).
    """

    def __init_subclass__(
        cls,
        method: Method = "naive",
        num_samples: int = 1,
        sigma: float = 1.0,
        *,
        evaluation: Evaluation = "sequential",
        baseline: bool = False,
        fitness_shaping: FitnessShaping | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        inherited = cls.forward
        if "forward" not in cls.__dict__ and getattr(inherited, _ENABLED, False):
            cls.forward = inherited.__wrapped__  # type: ignore[attr-defined,method-assign]  # the parent's original
        enable_zero_order_gradients(
            cls,
            method=method,
            num_samples=num_samples,
            sigma=sigma,
            evaluation=evaluation,
            baseline=baseline,
            fitness_shaping=fitness_shaping,
        )

    @abc.abstractmethod
    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Return the scalar objective (implemented by subclasses)."""
        raise NotImplementedError

    @abc.abstractmethod
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor | Sequence[Numeric]:  # noqa: B008
        """Draw perturbations of shape ``sample_shape`` (implemented by subclasses)."""
        raise NotImplementedError
