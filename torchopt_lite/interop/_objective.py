"""A torch objective ``fun(params, *args)`` seen by scipy as a function of one float64 vector.

Values and gradients come from plain autograd (the most permissive path: any function
``loss.backward()`` works on). Hessian-vector products are forward-over-reverse ``torch.func``
(``jvp`` of ``grad``) and full Hessians are ``torch.func.hessian``; both need a function that
``torch.func`` can differentiate twice, and say so when it cannot.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.interop._flat import FlatParams

NO_GRAPH = (
    "{caller}: the value of fun does not depend on params through autograd (it has no "
    "grad_fn); fun must compute with torch operations on the params it receives (no .item(), "
    ".numpy() or .detach() on the way), or use a gradient-free method such as 'Nelder-Mead', "
    "'Powell' or 'COBYLA'."
)
NOT_TWICE_DIFFERENTIABLE = (
    "{caller}: method {method!r} needs {what} of fun, computed with torch.func, but fun could "
    "not be differentiated twice: {err} fun must be built from torch operations that support "
    "torch.func transforms and forward-mode AD (a torch.autograd.Function needs setup_context "
    "and jvp); otherwise pick a gradient-only method such as 'L-BFGS-B', 'BFGS' or 'CG'."
)


@functools.cache
def load_forward_ad() -> None:
    """Import torch's forward-AD decompositions once, silencing torch's own deprecation warning.

    torch 2.13 builds them with ``torch.jit.script`` on the first ``jvp`` and warns that
    ``torch.jit.script`` is deprecated, a warning about torch internals users cannot act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.*", category=DeprecationWarning
        )
        with contextlib.suppress(ImportError):  # a torch without it needs nothing here
            import torch._decomp.decompositions_for_jvp  # noqa: F401


def check_scalar(value: Any, caller: str, name: str = "fun") -> Tensor:
    """Return ``value`` as a 0-d tensor, or raise if it is not a real one-element tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{caller}: {name} must return a scalar torch.Tensor; got {type(value).__name__}."
        )
    if not value.is_floating_point():
        raise TypeError(
            f"{caller}: {name} must return a real floating-point tensor; got {value.dtype}."
        )
    if value.numel() != 1:
        raise ValueError(
            f"{caller}: {name} must return a scalar (one-element) tensor; got shape "
            f"{tuple(value.shape)}. Reduce it, e.g. with .sum() or .mean()."
        )
    return value.reshape(())


class Objective:
    """``fun(params, *args)`` as float64 numpy callables for scipy.

    ``value_and_grad`` caches its last point, so scipy's separate ``fun(x)`` and ``jac(x)``
    calls at one point cost one forward and one backward pass.
    """

    def __init__(
        self,
        fun: Callable[..., Any],
        flat: FlatParams,
        args: tuple[Any, ...] = (),
        *,
        method: str = "",
    ) -> None:
        if not callable(fun):
            raise TypeError(f"{flat.caller}: fun must be callable; got {type(fun).__name__}.")
        self.fun = fun
        self.flat = flat
        self.args = args
        self.method = method
        self._cache_x: np.ndarray | None = None
        self._cache: tuple[float, np.ndarray] | None = None

    def flat_fun(self, x: Tensor) -> Tensor:
        """``fun(unravel(x), *args)`` as a 0-d tensor (differentiable in ``x``)."""
        return self.fun_with_args(x, self.args)

    def fun_with_args(self, x: Tensor, args: tuple[Any, ...]) -> Tensor:
        """``fun(unravel(x), *args)`` for given ``args`` (differentiable in both)."""
        return check_scalar(self.fun(self.flat.unravel(x), *args), self.flat.caller)

    def value(self, x: np.ndarray) -> float:
        """The objective at ``x`` without building a graph."""
        with torch.no_grad():
            return float(self.flat_fun(self.flat.to_tensor(x)))

    def batched_value(self, xs: np.ndarray) -> np.ndarray | float:
        """Values at the columns of ``xs`` (shape ``(n, S)``), evaluated with ``torch.vmap``.

        A 1-d ``xs`` is one point (scipy's polish step calls the same function).
        """
        if np.ndim(xs) == 1:
            return self.value(xs)
        with torch.no_grad():
            xs_t = self.flat.to_tensor(xs)
            values = torch.vmap(self.flat_fun, in_dims=1)(xs_t)
        return values.to("cpu", torch.float64).numpy()

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient (reverse-mode autograd) at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if (
            self._cache is not None
            and self._cache_x is not None
            and np.array_equal(self._cache_x, x)
        ):
            return self._cache
        x_t = self.flat.to_tensor(x).requires_grad_(True)
        with torch.enable_grad():
            loss = self.flat_fun(x_t)
            if not loss.requires_grad:
                raise ValueError(NO_GRAPH.format(caller=self.flat.caller))
            (g,) = torch.autograd.grad(loss, x_t)
        result = (float(loss.detach()), g.detach().to("cpu", torch.float64).numpy())
        self._cache_x, self._cache = x.copy(), result
        return result

    def value_with_grad(self, x: np.ndarray) -> float:
        """The objective at ``x``; fills the gradient cache for the ``grad`` call that follows."""
        return self.value_and_grad(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient at ``x`` (from the cache when ``x`` was just evaluated)."""
        return self.value_and_grad(x)[1].copy()

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        r"""Hessian-vector product :math:`\nabla^2 f(x)\,p` (forward-over-reverse)."""
        x_t, p_t = self.flat.to_tensor(x), self.flat.to_tensor(p)
        load_forward_ad()
        try:
            hvp = torch.func.jvp(torch.func.grad(self.flat_fun), (x_t,), (p_t,))[1]
        except (RuntimeError, NotImplementedError) as err:
            raise ValueError(self._not_twice("Hessian-vector products", err)) from err
        return hvp.detach().to("cpu", torch.float64).numpy()

    def hess(self, x: np.ndarray) -> np.ndarray:
        r"""The full Hessian :math:`\nabla^2 f(x)` (``torch.func.hessian``), shape ``(n, n)``."""
        x_t = self.flat.to_tensor(x)
        load_forward_ad()
        try:
            h = torch.func.hessian(self.flat_fun)(x_t)
        except (RuntimeError, NotImplementedError) as err:
            raise ValueError(self._not_twice("the Hessian", err)) from err
        return h.detach().to("cpu", torch.float64).numpy()

    def _not_twice(self, what: str, err: Exception) -> str:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not message.endswith("."):
            message += "."
        return NOT_TWICE_DIFFERENTIABLE.format(
            caller=self.flat.caller, method=self.method, what=what, err=message
        )
