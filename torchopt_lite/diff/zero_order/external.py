"""``numpy_function``: an external (NumPy) black box as a differentiable torch function."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torchopt_lite.diff.zero_order import _estimators, _flat, _steps
from torchopt_lite.diff.zero_order._options import Settings, fn_name, validate
from torchopt_lite.diff.zero_order.decorator import Method
from torchopt_lite.typing import Samplable, SampleFunc

_CALLER = "numpy_function"
Precision: TypeAlias = Literal["auto", "input"]
PRECISIONS = ("auto", "input")


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
    method: str
    sigma: float | None  # the user's step; None: chosen from the working dtype and the input
    precision: str

    def outputs(
        self, inputs: Sequence[Tensor], out_shape: tuple[int, ...] | None, dtype: torch.dtype
    ) -> Tensor:
        """``fn`` on NumPy copies of ``inputs``, as a tensor of dtype ``dtype``."""
        like = torch.empty((), dtype=dtype, device=self.layout.device)
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
        s, shape = self.settings, tuple(output.shape)
        layout, f_out = self._working_layout(inputs, output)
        cot = cot.to(layout.dtype)

        def scalar(leaves: list[Tensor]) -> Tensor:
            return (self.outputs(leaves, shape, layout.dtype) * cot).sum()

        def batched(leaves: list[Tensor]) -> Tensor:
            m = leaves[0].shape[0]
            return (self.outputs(leaves, (m, *shape), layout.dtype) * cot).reshape(m, -1).sum(1)

        call = batched if s.evaluation == "batched" else scalar
        theta = _flat.ravel(layout, inputs)
        g = _estimators.estimate(
            s.estimator,
            _flat.batch_evaluator(s.evaluation, layout, call, _CALLER),
            theta,
            _flat.noise(s.sampler, layout, s.num_samples, s.generator, _CALLER),
            _steps.step(self.method, self.sigma, theta, _CALLER),
            (f_out * cot).sum(),
            baseline=False,
            fitness_shaping=None,
        )
        return _flat.unravel(self.layout, g)  # back to each input's dtype

    def _working_layout(
        self, inputs: Sequence[Tensor], output: Tensor
    ) -> tuple[_flat.Layout, Tensor]:
        """The layout the estimate works in (float64 or the inputs'), and ``fn(x)`` in it.

        float64 when the inputs are float64, or when ``precision='auto'`` and ``fn``, called on
        float64 copies of the inputs, returns float64 values; the inputs' dtypes otherwise.
        """
        layout = self.layout
        wide = layout._replace(dtype=torch.float64, dtypes=(torch.float64,) * len(layout.dtypes))
        if layout.dtypes != wide.dtypes and self.precision == "auto":
            value = self._float64_output(_flat.ravel(wide, inputs), wide, tuple(output.shape))
            if value is not None:
                return wide, value
        return layout, output.to(layout.dtype)

    def _float64_output(
        self, theta: Tensor, layout: _flat.Layout, shape: tuple[int, ...]
    ) -> Tensor | None:
        """``fn`` at the float64 point ``theta``; ``None`` when ``fn`` does not work in float64.

        A black box that raises on float64 arrays, or returns values of lower precision (it
        computes in its own dtype), would lose a float64-sized step in rounding.
        """
        batched = self.settings.evaluation == "batched"
        leaves = _flat.unravel(layout, theta[None] if batched else theta)
        try:
            value = np.asarray(self.fn(*map(_to_numpy, leaves), **self.kwargs))
        except Exception:  # e.g. compiled code that takes only the inputs' dtype
            return None
        if np.issubdtype(value.dtype, np.floating) and value.dtype.itemsize < 8:
            return None
        like = torch.empty((), dtype=torch.float64, device=layout.device)
        what = f"the output of {fn_name(self.fn)} at the float64 input"
        return _to_tensor(value, what, like, (1, *shape) if batched else shape).reshape(shape)


class _NumpyFunction(torch.autograd.Function):
    """fn(x) through NumPy forward; a user-supplied or estimated vector-Jacobian product back."""

    @staticmethod
    def forward(call: _External, *inputs: Tensor) -> Tensor:
        output = call.outputs(inputs, None, call.layout.dtype)
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
    sigma: float | None = None,
    batched: bool = False,
    generator: torch.Generator | None = None,
    precision: Precision = "auto",
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
          \bar x_j \approx \frac{s(x + h_j e_j) - s(x - h_j e_j)}{2h_j},

      costs :math:`2d` calls of ``fn`` for :math:`d` input entries, so it suits small
      problems that need near-exact gradients; the sampling methods of
      :func:`~torchopt_lite.diff.zero_order.zero_order` (``'antithetic'``, ...) cost
      :math:`2K` calls for any :math:`d`.

    **Precision of the estimate.** A difference quotient loses digits to rounding: its error
    is about :math:`h |s''|` (one-sided) or :math:`h^2 |s'''|` (central), plus
    :math:`\epsilon |s| / h`, where :math:`\epsilon` is the machine epsilon of the dtype the
    differences are taken in. Two rules keep it small:

    * *The working dtype is float64 when the black box takes it.* With ``precision='auto'``
      and inputs that are not all float64, ``fn`` is called once more per backward pass, on
      float64 copies of the inputs. If it returns float64 values (a Python float counts), the
      perturbed points and their values stay in float64 and only the gradient is cast to each
      input's dtype. If that call raises, or returns values of lower precision (``fn``
      computes in its own dtype), the estimate works in the inputs' dtype instead, as it
      always does with ``precision='input'``.
    * *The step follows the working dtype and the input.* ``sigma=None`` picks, as
      :func:`scipy.optimize.approx_fprime` and numdifftools do,

      .. math::
          h_j = \epsilon^{1/k} \max(1, |x_j|), \qquad k = 2 \text{ (forward difference)},
          \quad k = 3 \text{ (central difference)},

      rounded so that :math:`x_j + h_j` is exact (central, :math:`|x_j| \le 1`: about
      :math:`6 \cdot 10^{-6}` in float64, :math:`5 \cdot 10^{-3}` in float32). The directional
      differences of ``'forward'`` (:math:`k = 2`), ``'antithetic'`` and ``'spsa'``
      (:math:`k = 3`) take one step, :math:`\epsilon^{1/k} \max(1, \max_j |x_j|)`.
      ``'naive'`` takes no difference: its :math:`\sigma` is a smoothing scale to pass
      explicitly. A ``sigma`` below :math:`\sqrt\epsilon \max(1, \max_j |x_j|)` leaves less
      than half of the working dtype's digits, and the backward pass warns
      (:class:`UserWarning` naming ``sigma``).

    Args:
        fn: ``fn(*arrays, **kwargs) -> array``. Keyword arguments are passed through as they
            are and are not differentiated. If omitted, returns a decorator.
        vjp: a user-supplied vector-Jacobian product, as above.
        grad: a user-supplied gradient (scalar outputs), as above.
        method: the estimator when neither ``vjp`` nor ``grad`` is given.
        distribution: the perturbations of the sampling methods (default: standard normal,
            Rademacher for ``'spsa'``).
        num_samples: samples per backward pass (sampling methods).
        sigma: the finite-difference step :math:`h` or the perturbation scale; ``None``
            chooses it as above (``'naive'`` needs one).
        batched: ``fn`` accepts arrays with a leading batch dimension ``M`` on every input and
            returns ``(M, *output_shape)``: the estimate then calls it once.
        generator: seeds the noise of the sampling methods.
        precision: ``'auto'`` estimates in float64 when ``fn`` takes float64 arrays (checked
            by one extra call per backward pass); ``'input'`` in the inputs' dtype, with no
            extra call (for a black box that computes in lower precision than it returns).

    Returns:
        The wrapped function (or a decorator when ``fn`` is omitted).

    Raises:
        ValueError: if both ``vjp`` and ``grad`` are given, ``precision`` is unknown, or
            ``method='naive'`` comes without ``sigma`` (and, when called, if results have the
            wrong shape or count).
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
        >>> cube = torchopt_lite.diff.zero_order.numpy_function(lambda x: x**3)
        >>> y = torch.tensor([2.0], requires_grad=True)  # float32, differenced in float64
        >>> torch.autograd.grad(cube(y).sum(), y)[0]  # 3 y^2
        tensor([12.])
    """
    if vjp is not None and grad is not None:
        raise ValueError(f"{_CALLER}: pass vjp= or grad=, not both.")
    for name, value in (("vjp", vjp), ("grad", grad)):
        if value is not None and not callable(value):
            raise TypeError(f"{_CALLER}: {name} must be callable; got {type(value).__name__}.")
    if precision not in PRECISIONS:
        raise ValueError(
            f"{_CALLER}: precision must be one of {', '.join(map(repr, PRECISIONS))}; "
            f"got {precision!r}."
        )
    if sigma is None and method == "naive":
        raise ValueError(
            f"{_CALLER}: method='naive' needs an explicit sigma: its estimate "
            "f(x + sigma u) u / sigma takes no difference, so sigma is a smoothing scale that "
            "no rule can choose (the variance grows as 1 / sigma^2); pass e.g. sigma=0.1, or "
            "use method='antithetic'."
        )
    evaluation = "batched" if batched else "sequential"
    settings = validate(
        _CALLER,
        distribution,
        method,
        (0,),
        num_samples,
        1.0 if sigma is None else sigma,  # None is ours (chosen per call); check a given one
        evaluation,
        False,
        None,
        generator,
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
            layout = _flat.layout_of(inputs)
            call = _External(fn, vjp, grad, kwargs, layout, settings, method, sigma, precision)
            return _NumpyFunction.apply(call, *inputs)

        return apply

    return wrap if fn is None else wrap(fn)
