"""A torch objective ``fun(params, *args)`` seen by scipy as a function of one float64 vector.

Values and gradients come from plain autograd (the most permissive path: any function
``loss.backward()`` works on). Second derivatives come from one of two backends:

* ``'autograd'``: double backward. Hessian-vector products differentiate the gradient's graph
  (``create_graph=True``) once more; the graph is kept for the last point, so the repeated
  products of a Newton-CG or trust-region inner loop cost one backward pass each. Full
  Hessians take one such pass per coordinate. Needs a ``fun`` whose backward is
  differentiable (plain torch operations, or ``torch.autograd.Function``\\ s with a
  differentiable ``backward``).
* ``'func'``: forward-over-reverse ``torch.func`` (``jvp`` of ``grad``) and
  ``torch.func.hessian``. Needs a ``fun`` that ``torch.func`` can transform, forward mode
  included.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.interop._flat import FlatParams

HessianBackend: TypeAlias = Literal["autograd", "func"]
HESSIAN_BACKENDS = ("autograd", "func")
NO_GRAPH = (
    "{caller}: the value of fun does not depend on params through autograd (it has no "
    "grad_fn); fun must compute with torch operations on the params it receives (no .item(), "
    ".numpy() or .detach() on the way), or use a gradient-free method such as 'Nelder-Mead', "
    "'Powell' or 'COBYLA'."
)
NOT_DEPENDENT = (
    "{caller}: fun's output does not depend on the parameters: autograd finds no path from the "
    "params fun receives to the value it returns. Compute the value from those params; tensors "
    "captured by fun, such as a module's own parameters, are not them (use "
    "torch.func.functional_call(module, params, inputs) to run a module on the params)."
)
NOT_TWICE_DIFFERENTIABLE = (
    "{caller}: method {method!r} needs {what} of fun, computed with {backend}, but fun could "
    "not be differentiated twice: {err} {hint}"
)
TWICE_HINTS = {
    "autograd": (
        "With hessian_backend='autograd' fun's backward must itself be differentiable (not "
        "@once_differentiable); hessian_backend='func' takes a torch.autograd.Function with "
        "setup_context and jvp instead. Otherwise pick a gradient-only method such as "
        "'L-BFGS-B', 'BFGS' or 'CG'."
    ),
    "func": (
        "fun must be built from torch operations that support torch.func transforms and "
        "forward-mode AD (a torch.autograd.Function needs setup_context and jvp); "
        "hessian_backend='autograd' needs only a differentiable backward. Otherwise pick a "
        "gradient-only method such as 'L-BFGS-B', 'BFGS' or 'CG'."
    ),
}
BACKEND_NAMES = {"autograd": "double backward", "func": "torch.func"}


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


def check_hessian_backend(hessian_backend: Any, caller: str) -> str:
    """``hessian_backend`` if it names a backend, else a ``ValueError``."""
    if hessian_backend not in HESSIAN_BACKENDS:
        raise ValueError(
            f"{caller}: hessian_backend must be one of "
            f"{', '.join(map(repr, HESSIAN_BACKENDS))}; got {hessian_backend!r}."
        )
    return str(hessian_backend)


def to_numpy(t: Tensor) -> np.ndarray:
    """A float64 host copy of ``t`` (what scipy reads)."""
    return t.detach().to("cpu", torch.float64).numpy()


class ScipyObjective(abc.ABC):
    """The callables scipy takes, for one way of evaluating a point ``x``.

    :meth:`value_and_grad` caches its last point, so scipy's separate ``fun(x)`` and ``jac(x)``
    calls at one point cost one evaluation. Subclasses say how a point is evaluated.
    """

    def __init__(self, flat: FlatParams, method: str = "") -> None:
        self.flat = flat
        self.method = method
        self._cache_x: np.ndarray | None = None
        self._cache: tuple[float, np.ndarray] | None = None

    @abc.abstractmethod
    def value(self, x: np.ndarray) -> float:
        """The objective at ``x`` (no gradient)."""

    @abc.abstractmethod
    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient at ``x``, uncached."""

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient at ``x`` (cached for the last point)."""
        x = np.asarray(x, dtype=np.float64)
        if (
            self._cache is not None
            and self._cache_x is not None
            and np.array_equal(self._cache_x, x)
        ):
            return self._cache
        result = self.evaluate(x)
        self._cache_x, self._cache = x.copy(), result
        return result

    def value_with_grad(self, x: np.ndarray) -> float:
        """The objective at ``x``; fills the gradient cache for the ``grad`` call that follows."""
        return self.value_and_grad(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient at ``x`` (from the cache when ``x`` was just evaluated)."""
        return self.value_and_grad(x)[1].copy()

    @abc.abstractmethod
    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        r"""The Hessian-vector product :math:`\nabla^2 f(x)\,p`."""

    @abc.abstractmethod
    def hess(self, x: np.ndarray) -> np.ndarray:
        r"""The full Hessian :math:`\nabla^2 f(x)`, shape ``(n, n)``."""


class Objective(ScipyObjective):
    """``fun(params, *args)`` as float64 numpy callables for scipy (derivatives by autograd)."""

    def __init__(
        self,
        fun: Callable[..., Any],
        flat: FlatParams,
        args: tuple[Any, ...] = (),
        *,
        method: str = "",
        hessian_backend: str = "autograd",
    ) -> None:
        if not callable(fun):
            raise TypeError(f"{flat.caller}: fun must be callable; got {type(fun).__name__}.")
        super().__init__(flat, method)
        self.fun = fun
        self.args = args
        self.hessian_backend = check_hessian_backend(hessian_backend, flat.caller)
        self._graph: tuple[np.ndarray, Tensor, Tensor, Tensor] | None = None  # of _gradient

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
        return to_numpy(values)

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient (reverse-mode autograd) at ``x``."""
        _, loss, g, _ = self._gradient(x, create_graph=False)
        return float(loss.detach()), to_numpy(g)

    def _gradient(
        self, x: np.ndarray, *, create_graph: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_t, f(x_t), grad f(x_t), seed)``: ``x_t`` a leaf, ``seed`` the cotangent 1."""
        x_t = self.flat.to_tensor(x).requires_grad_(True)
        with torch.enable_grad():
            loss = self.flat_fun(x_t)
            if not loss.requires_grad:
                raise ValueError(NO_GRAPH.format(caller=self.flat.caller))
            # For a second backward the cotangent requires grad: a differentiable backward
            # carries it into the gradient (g = J^T seed, even where fun is linear in x), so a
            # gradient with no path back to it comes from a backward that autograd cannot
            # differentiate again (@once_differentiable, or computed outside autograd).
            seed = torch.ones_like(loss).requires_grad_(create_graph)
            (g,) = torch.autograd.grad(
                loss, x_t, seed, create_graph=create_graph, allow_unused=True
            )
        if g is None:
            raise ValueError(NOT_DEPENDENT.format(caller=self.flat.caller))
        return x_t, loss, g, seed

    def _double_backward(self, x: np.ndarray, vs: Tensor) -> Tensor:
        r"""The rows :math:`\nabla_x (\nabla f(x) \cdot v)` for the rows ``v`` of ``vs``.

        The gradient's graph is kept for the last point: at that point each row costs one
        backward pass.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._graph is None or not np.array_equal(self._graph[0], x):
            x_t, _, g, seed = self._gradient(x, create_graph=True)
            self._graph = (x.copy(), x_t, g, seed)
        _, x_t, g, seed = self._graph
        rows = (
            [
                torch.autograd.grad(g, (x_t, seed), v, retain_graph=True, allow_unused=True)
                for v in vs
            ]
            if g.requires_grad
            else []
        )
        if not rows or any(d_seed is None for _, d_seed in rows):
            raise RuntimeError(
                "its backward is not differentiable (marked @once_differentiable, or computed "
                "outside autograd)."
            )
        # a row of None: the gradient does not depend on x (fun is linear in it)
        return torch.stack([torch.zeros_like(x_t) if r is None else r for r, _ in rows])

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        r"""Hessian-vector product :math:`\nabla^2 f(x)\,p` (double backward or ``torch.func``)."""
        p_t = self.flat.to_tensor(p)
        try:
            if self.hessian_backend == "autograd":
                hvp = self._double_backward(x, p_t[None])[0]
            else:
                load_forward_ad()
                x_t = self.flat.to_tensor(x)
                hvp = torch.func.jvp(torch.func.grad(self.flat_fun), (x_t,), (p_t,))[1]
        except (RuntimeError, NotImplementedError) as err:
            raise ValueError(self._not_twice("Hessian-vector products", err)) from err
        return to_numpy(hvp)

    def hess(self, x: np.ndarray) -> np.ndarray:
        r"""The full Hessian :math:`\nabla^2 f(x)` (a backward pass per row, or ``torch.func``)."""
        try:
            if self.hessian_backend == "autograd":
                basis = torch.eye(self.flat.size, dtype=torch.float64, device=self.flat.device)
                h = self._double_backward(x, basis)
            else:
                load_forward_ad()
                h = torch.func.hessian(self.flat_fun)(self.flat.to_tensor(x))
        except (RuntimeError, NotImplementedError) as err:
            raise ValueError(self._not_twice("the Hessian", err)) from err
        return to_numpy(h)

    def _not_twice(self, what: str, err: Exception) -> str:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not message.endswith("."):
            message += "."
        return NOT_TWICE_DIFFERENTIABLE.format(
            caller=self.flat.caller,
            method=self.method,
            what=what,
            backend=BACKEND_NAMES[self.hessian_backend],
            err=message,
            hint=TWICE_HINTS[self.hessian_backend],
        )
