"""Options shared by ``zero_order`` and ``numpy_function``, validated once (internal)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite.diff.zero_order import _estimators, _flat
from torchopt_lite.typing import Numeric, Samplable, SampleFunc


class WrappedSamplable(Samplable):
    """A sample function ``sample_fn(sample_shape) -> Tensor`` seen as a :class:`Samplable`."""

    def __init__(self, sample_fn: SampleFunc) -> None:
        self.sample_fn = sample_fn

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor | Sequence[Numeric]:  # noqa: B008
        """Return ``sample_fn(sample_shape)``."""
        return self.sample_fn(sample_shape)


class Settings(NamedTuple):
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


def fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


def check_argnums(argnums: Any) -> tuple[int, ...]:
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


def is_standard_normal(distribution: Any) -> bool:
    """Whether ``distribution`` is exactly ``torch.distributions.Normal(0.0, 1.0)``."""
    if type(distribution) is not torch.distributions.Normal or distribution.batch_shape:
        return False
    return bool(distribution.loc == 0) and bool(distribution.scale == 1)


def validate(
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
) -> Settings:
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
    elif is_standard_normal(distribution):
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
    argnums = check_argnums(argnums)
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
    return Settings(
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
