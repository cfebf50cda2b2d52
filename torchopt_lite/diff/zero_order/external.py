"""``numpy_function``: an external (NumPy) black box as a differentiable torch function."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torchopt_lite.diff.zero_order import _estimators, _flat
from torchopt_lite.diff.zero_order._options import Settings, fn_name, validate
from torchopt_lite.diff.zero_order.decorator import Method
from torchopt_lite.typing import Samplable, SampleFunc

_CALLER = "numpy_function"


def _to_numpy(x: Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


def _to_tensor(value: Any, what: str, like: Tensor, shape: tuple[int, ...] | None) -> Tensor:
    """``value`` as a tensor shaped ``shape`` (when given) with ``like``'s dtype and device."""
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{_CALLER}: {what} must be a real numeric array; got dtype {array.dtype}.")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{_CALLER}: {what} must have shape {shape}; got {array.shape}.")
    return torch.as_tensor(array).to(dtype=like.dtype, device=like.device)


class _External(NamedTuple):
    """One call of a wrapped NumPy function: the non-tensor input of :class:`_NumpyFunction`."""

    fn: Callable[..., Any]
    vjp: Callable[..., Any] | None
    grad: Callable[..., Any] | None
    kwargs: dict[str, Any]
    layout: _flat.Layout
    settings: Settings

    def outputs(self, inputs: Sequence[Tensor], out_shape: tuple[int, ...] | None) -> Tensor:
        """``fn`` on NumPy copies of ``inputs``, as a tensor of the inputs' promoted dtype."""
        like = torch.empty((), dtype=self.layout.dtype, device=self.layout.device)
        what = f"the output of {fn_name(self.fn)}"
        if out_shape is not None:
            what += " at a perturbed input (it must keep the shape it had at the input)"
        return _to_tensor(self.fn(*map(_to_numpy, inputs), **self.kwargs), what, like, out_shape)

    def input_grads(self, inputs: Sequence[Tensor], output: Tensor, cot: Tensor) -> list[Tensor]:
        """The vector-Jacobian product ``cot^T J`` for each input."""
        arrays = [_to_numpy(x) for x in inputs]
        if self.vjp is not None:
            return self._checked(self.vjp(_to_numpy(cot), *arrays, **self.kwargs), inputs, "vjp")
        if self.grad is not None:
            grads = self._checked(self.grad(*arrays, **self.kwargs), inputs, "grad")
            return [g * cot for g in grads]
        return self._estimated(inputs, output, cot)

    def _checked(self, result: Any, inputs: Sequence[Tensor], name: str) -> list[Tensor]:
        results = list(result) if isinstance(result, tuple | list) else [result]
        if len(results) != len(inputs):
            raise ValueError(
                f"{_CALLER}: {name} must return one array per input ({len(inputs)}); "
                f"got {len(results)}."
            )
        return [
            _to_tensor(r, f"{name} result {i}", x, tuple(x.shape))
            for i, (r, x) in enumerate(zip(results, inputs, strict=True))
        ]

    def _estimated(self, inputs: Sequence[Tensor], output: Tensor, cot: Tensor) -> list[Tensor]:
        """Estimate ``cot^T J`` as the gradient of the scalar ``<cot, fn(x)>``."""
        s, layout, shape = self.settings, self.layout, tuple(output.shape)
        cot = cot.to(layout.dtype)

        def scalar(leaves: list[Tensor]) -> Tensor:
            return (self.outputs(leaves, shape) * cot).sum()

        def batched(leaves: list[Tensor]) -> Tensor:
            m = leaves[0].shape[0]
            return (self.outputs(leaves, (m, *shape)) * cot).reshape(m, -1).sum(1)

        call = batched if s.evaluation == "batched" else scalar
        g = _estimators.estimate(
            s.estimator,
            _flat.batch_evaluator(s.evaluation, layout, call, _CALLER),
            _flat.ravel(layout, inputs),
            _flat.noise(s.sampler, layout, s.num_samples, s.generator, _CALLER),
            s.sigma,
            (output.to(layout.dtype) * cot).sum(),
            baseline=False,
            fitness_shaping=None,
        )
        return _flat.unravel(layout, g)


class _NumpyFunction(torch.autograd.Function):
    """fn(x) through NumPy forward; a user-supplied or estimated vector-Jacobian product back."""

    @staticmethod
    def forward(call: _External, *inputs: Tensor) -> Tensor:
        output = call.outputs(inputs, None)
        if call.grad is not None and output.dim() != 0:
            raise ValueError(
                f"{_CALLER}: grad= needs a scalar output; {fn_name(call.fn)} returned shape "
                f"{tuple(output.shape)}. Pass vjp= for a non-scalar output."
            )
        return output

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.call = inputs[0]
        ctx.save_for_backward(*inputs[1:], output)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        *inputs, output = ctx.saved_tensors
        return (None, *ctx.call.input_grads(inputs, output, grad_output))


def numpy_function(
    fn: Callable[..., Any] | None = None,
    *,
    vjp: Callable[..., Any] | None = None,
    grad: Callable[..., Any] | None = None,
    method: Method = "central_difference",
    distribution: SampleFunc | Samplable | None = None,
    num_samples: int = 1,
    sigma: float = 1e-6,
    batched: bool = False,
    generator: torch.Generator | None = None,
) -> Any:
    r"""Wrap a function of NumPy arrays as a differentiable function of torch tensors.

    ``y = wrapped(x_1, ..., x_n)`` converts each tensor :math:`x_i` to a NumPy array, calls
    ``fn`` (another program, a simulator, ...) and returns its output as a tensor of the
    inputs' promoted dtype on their device. The backward pass returns the vector-Jacobian
    products :math:`\bar x_i = J_i^\top \bar y` from, in order of preference:

    * ``vjp(cotangent, *arrays, **kwargs)``, returning one array per input;
    * ``grad(*arrays, **kwargs)`` for a scalar output, returning :math:`\nabla_{x_i} f`
      (multiplied by the cotangent);
    * an estimate: ``method`` applied to the scalar :math:`s(x) = \langle \bar y, f(x)\rangle`,
      whose gradient is exactly the VJP. The default ``'central_difference'``,

      .. math::
          \bar x_j \approx \frac{s(x + h e_j) - s(x - h e_j)}{2h},

      costs :math:`2d` calls of ``fn`` for :math:`d` input entries, so it suits small
      problems that need near-exact gradients; the sampling methods of
      :func:`~torchopt_lite.diff.zero_order.zero_order` (``'antithetic'``, ...) cost
      :math:`2K` calls for any :math:`d`.

    Args:
        fn: ``fn(*arrays, **kwargs) -> array``. Keyword arguments are passed through as they
            are and are not differentiated. If omitted, returns a decorator.
        vjp: a user-supplied vector-Jacobian product, as above.
        grad: a user-supplied gradient (scalar outputs), as above.
        method: the estimator when neither ``vjp`` nor ``grad`` is given.
        distribution: the perturbations of the sampling methods (default: standard normal,
            Rademacher for ``'spsa'``).
        num_samples: samples per backward pass (sampling methods).
        sigma: the finite-difference step :math:`h` or the perturbation scale.
        batched: ``fn`` accepts arrays with a leading batch dimension ``M`` on every input and
            returns ``(M, *output_shape)``: the estimate then calls it once.
        generator: seeds the noise of the sampling methods.

    Returns:
        The wrapped function (or a decorator when ``fn`` is omitted).

    Raises:
        ValueError: if both ``vjp`` and ``grad`` are given (and, when called, if results have
            the wrong shape or count).
        TypeError: if inputs are not floating-point tensors or results are not real arrays.

    Example:
        >>> import numpy as np
        >>> @torchopt_lite.diff.zero_order.numpy_function(vjp=lambda g, x: 2 * x * g)
        ... def square(x):
        ...     return np.square(x)
        >>> x = torch.tensor([1.0, -3.0], requires_grad=True)
        >>> square(x).sum().backward()
        >>> x.grad
        tensor([ 2., -6.])
        >>> cube = torchopt_lite.diff.zero_order.numpy_function(lambda x: x**3, sigma=1e-4)
        >>> y = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.grad(cube(y).sum(), y)[0]   # 3 y^2
        tensor([12.0000], dtype=torch.float64)
    """
    if vjp is not None and grad is not None:
        raise ValueError(f"{_CALLER}: pass vjp= or grad=, not both.")
    for name, value in (("vjp", vjp), ("grad", grad)):
        if value is not None and not callable(value):
            raise TypeError(f"{_CALLER}: {name} must be callable; got {type(value).__name__}.")
    evaluation = "batched" if batched else "sequential"
    settings = validate(
        _CALLER, distribution, method, (0,), num_samples, sigma, evaluation, False, None, generator
    )

    def wrap(fn: Callable[..., Any]) -> Callable[..., Tensor]:
        if not callable(fn):
            raise TypeError(f"{_CALLER}: fn must be callable; got {type(fn).__name__}.")

        @functools.wraps(fn)
        def apply(*inputs: Any, **kwargs: Any) -> Tensor:
            for i, x in enumerate(inputs):
                if not (isinstance(x, Tensor) and x.is_floating_point()):
                    got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
                    raise TypeError(
                        f"{_CALLER}: every positional input of {fn_name(fn)} must be a "
                        f"floating-point tensor (pass other values as keyword arguments); "
                        f"input {i} is {got}."
                    )
            if not inputs:
                raise ValueError(f"{_CALLER}: {fn_name(fn)} needs at least one tensor input.")
            call = _External(fn, vjp, grad, kwargs, _flat.layout_of(inputs), settings)
            return _NumpyFunction.apply(call, *inputs)

        return apply

    return wrap if fn is None else wrap(fn)
