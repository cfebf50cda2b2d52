"""``ImplicitMetaGradientModule``: an inner problem as a module, differentiated implicitly."""

from __future__ import annotations

import abc
import inspect
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from torchopt_lite.diff.implicit.decorator import custom_root
from torchopt_lite.nn.module import MetaGradientModule
from torchopt_lite.nn.stateless import reparametrize, swap_state
from torchopt_lite.typing import LinearSolver

Names = tuple[str, ...]


def _named(
    module: ImplicitMetaGradientModule, method: str = "solve"
) -> tuple[Names, tuple[Tensor, ...], Names, tuple[Tensor, ...]]:
    params = tuple(module.named_parameters())
    metas = tuple(module.named_meta_parameters())
    cls = type(module).__name__
    if not params:
        raise RuntimeError(
            f"{cls}.{method}: The module has no parameters. Assign the inner variables as "
            "attributes (tensors that require grad) in __init__."
        )
    if not metas:
        raise RuntimeError(
            f"{cls}.{method}: The module has no meta-parameters. Pass the meta-parameters "
            "(tensors that require grad, or a meta-module) to the constructor."
        )
    return (
        tuple(n for n, _ in params),
        tuple(p for _, p in params),
        tuple(n for n, _ in metas),
        tuple(p for _, p in metas),
    )


def _pairs(names: Names, tensors: tuple[Tensor, ...]) -> dict[str, Tensor]:
    return dict(zip(names, tensors, strict=True))


def _optimality(
    params: tuple[Tensor, ...],
    metas: tuple[Tensor, ...],
    module: ImplicitMetaGradientModule,
    names: Names,
    meta_names: Names,
    *input: Any,
    **kwargs: Any,
) -> tuple[Tensor, ...]:
    """The module's optimality residual at ``params`` and ``metas`` (a stateless call)."""
    with reparametrize(module, _pairs(names + meta_names, params + metas)):
        out = module.optimality(*input, **kwargs)
    return tuple(out) if isinstance(out, (list, tuple)) else out


def _objective(
    params: tuple[Tensor, ...],
    metas: tuple[Tensor, ...],
    module: ImplicitMetaGradientModule,
    names: Names,
    meta_names: Names,
    *input: Any,
    **kwargs: Any,
) -> Tensor:
    with reparametrize(module, _pairs(names + meta_names, params + metas)):
        return module.objective(*input, **kwargs)


def _solve(
    params: tuple[Tensor, ...],
    metas: tuple[Tensor, ...],
    module: ImplicitMetaGradientModule,
    names: Names,
    meta_names: Names,
    *input: Any,
    **kwargs: Any,
) -> tuple[tuple[Tensor, ...], Any]:
    """Run the user's ``solve`` (which updates the module in place); return (params, output)."""
    output = type(module)._raw_solve(module, *input, **kwargs)
    return tuple(p for _, p in module.named_parameters()), output


class ImplicitMetaGradientModule(MetaGradientModule, metaclass=abc.ABCMeta):
    r"""Base class for an inner problem whose solution is differentiated implicitly.

    A subclass holds the inner variables :math:`x` as parameters and receives the
    meta-parameters :math:`\theta` (tensors or modules) in its constructor (see
    :class:`~torchopt_lite.nn.MetaGradientModule`). It defines:

    * ``solve(*input)``: updates the parameters in place to a solution :math:`x^\star(\theta)`
      (any method; it runs under ``no_grad``, so wrap an autograd inner loop in
      ``torch.enable_grad()``) and returns anything;
    * ``optimality(*input)``: the residual :math:`F(x, \theta)`, a tuple shaped like
      ``tuple(self.parameters())``; or ``objective(*input)``: a scalar :math:`f(x, \theta)`,
      and then :math:`F = \nabla_x f`.

    After ``module.solve(*input)``, the parameters carry :func:`custom_root` gradients:

    .. math::
        \frac{\partial x^\star}{\partial \theta} = -\left(\partial_x F\right)^{-1}
        \partial_\theta F,

    so an outer loss computed from ``module(...)`` back-propagates into the meta-parameters.
    The linear solver is set per class: ``class Inner(ImplicitMetaGradientModule,
    linear_solve=torchopt_lite.linear_solve.solve_cg(maxiter=10))``; ``None`` means
    :func:`~torchopt_lite.linear_solve.solve_normal_cg`.

    Example:
        >>> class Ridge(ImplicitMetaGradientModule):
        ...     def __init__(self, lam):
        ...         super().__init__()
        ...         self.lam = lam                               # meta-parameter
        ...         self.w = torch.zeros(2, requires_grad=True)  # inner variable
        ...     def objective(self, X, y):
        ...         return 0.5 * ((X @ self.w - y) ** 2).sum() + 0.5 * self.lam * (self.w**2).sum()
        ...     def solve(self, X, y):
        ...         A = X.T @ X + self.lam * torch.eye(2)
        ...         self.w.copy_(torch.linalg.solve(A, X.T @ y))
        >>> lam = torch.tensor(1.0, requires_grad=True)
        >>> inner = Ridge(lam)
        >>> inner.solve(torch.eye(2), torch.ones(2))
        >>> inner.w.sum().backward()                           # w* = y / (1 + lam)
        >>> lam.grad                                           # d/dlam 2 / (1 + lam)
        tensor(-0.5000)

    Note:
        Meta-modules are recognised in ``.eval()`` mode too (upstream #144), errors name the
        class, and a subclass of a subclass may change ``linear_solve`` or override
        ``solve`` (TorchOpt raises "already enabled").
    """

    linear_solve: ClassVar[LinearSolver | None] = None
    _raw_solve: ClassVar[Callable[..., Any]]
    _wrapped_solve: ClassVar[Callable[..., Any]]

    def __init_subclass__(cls, linear_solve: LinearSolver | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.linear_solve = linear_solve
        defines_optimality, defines_objective = (
            _defines(cls, "optimality"),
            _defines(cls, "objective"),
        )
        if not (defines_optimality or defines_objective):
            raise TypeError(
                f"{cls.__name__}: ImplicitMetaGradientModule requires either an optimality() "
                "method or an objective() method."
            )
        if not defines_optimality:  # module.optimality() works, as in TorchOpt
            make_optimality_from_objective(cls)
        own = cls.__dict__.get("solve")
        if own is not None and own is not getattr(cls, "_wrapped_solve", None):
            cls._raw_solve = own
        if getattr(cls, "_raw_solve", None) is not None:  # else solve() is still abstract
            enable_implicit_gradients(cls)

    @abc.abstractmethod
    def solve(self, *input: Any, **kwargs: Any) -> Any:
        """Solve the inner problem in place: update ``self.parameters()`` to a solution."""

    def optimality(self, *input: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        r"""Return the residual :math:`F(x, \theta)`, shaped like ``tuple(self.parameters())``.

        Defaults to :math:`\nabla_x` :meth:`objective` when only that is defined.
        """
        raise NotImplementedError

    def objective(self, *input: Any, **kwargs: Any) -> Tensor:
        r"""Return the scalar inner objective :math:`f(x, \theta)`."""
        raise NotImplementedError


# The optimality() methods make_optimality_from_objective built (not the user's own).
_FROM_OBJECTIVE: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _defines(cls: type, method: str) -> bool:
    """Whether ``cls`` overrides ``ImplicitMetaGradientModule.<method>`` with a plain method."""
    static = inspect.getattr_static(cls, method)
    if static is inspect.getattr_static(ImplicitMetaGradientModule, method):
        return False
    if isinstance(static, (staticmethod, classmethod)):
        raise TypeError(f"{cls.__name__}: method {method}() must not be a {type(static).__name__}.")
    if not callable(static):
        raise TypeError(f"{cls.__name__}: method {method}() must be callable.")
    return True


def make_optimality_from_objective(
    cls: type[ImplicitMetaGradientModule],
) -> type[ImplicitMetaGradientModule]:
    r"""Give ``cls`` an ``optimality()`` method: :math:`F = \nabla_x f` of its ``objective()``.

    Subclasses that define only ``objective()`` are differentiated through this gradient
    already; the function is TorchOpt's public name for the same step.

    Example:
        >>> class Ridge(ImplicitMetaGradientModule):
        ...     def __init__(self, lam):
        ...         super().__init__()
        ...         self.lam, self.w = lam, torch.nn.Parameter(torch.ones(2))
        ...     def objective(self):
        ...         return 0.5 * self.lam * (self.w**2).sum()
        ...     def solve(self):
        ...         self.w.zero_()
        >>> lam = torch.tensor(2.0, requires_grad=True)
        >>> make_optimality_from_objective(Ridge)(lam).optimality()
        (tensor([2., 2.], grad_fn=...),)
    """
    if not _defines(cls, "objective"):
        raise TypeError(f"{cls.__name__}: The objective function is not defined.")
    objective_grad = torch.func.grad(_objective, argnums=0)

    def optimality(self: ImplicitMetaGradientModule, *input: Any, **kwargs: Any) -> Any:
        names, params, meta_names, metas = _named(self, "optimality")
        return objective_grad(params, metas, self, names, meta_names, *input, **kwargs)

    _FROM_OBJECTIVE.add(optimality)
    cls.optimality = optimality  # type: ignore[method-assign]  # TorchOpt's contract
    return cls


def enable_implicit_gradients(
    cls: type[ImplicitMetaGradientModule],
) -> type[ImplicitMetaGradientModule]:
    r"""Wrap ``cls.solve`` so the solved parameters carry :func:`custom_root` gradients.

    Every subclass of :class:`ImplicitMetaGradientModule` that defines ``solve()`` is wrapped
    when the class is created; this is TorchOpt's public name for that step, and calling it on
    such a class again raises ``TypeError`` (as in TorchOpt).

    Example:
        >>> class Inner(ImplicitMetaGradientModule):
        ...     def __init__(self, theta):
        ...         super().__init__()
        ...         self.theta, self.x = theta, torch.nn.Parameter(torch.zeros(1))
        ...     def objective(self):
        ...         return ((self.x - self.theta) ** 2).sum()
        ...     def solve(self):
        ...         self.x.copy_(self.theta)
        >>> enable_implicit_gradients(Inner)
        Traceback (most recent call last):
            ...
        TypeError: Inner: Implicit gradients are already enabled for the `solve` method.
    """
    if cls.__dict__.get("solve") is not None and cls.__dict__["solve"] is getattr(
        cls, "_wrapped_solve", None
    ):
        raise TypeError(
            f"{cls.__name__}: Implicit gradients are already enabled for the `solve` method."
        )
    if "solve" in cls.__dict__:
        cls._raw_solve = cls.__dict__["solve"]
    optimality_fn = _optimality
    if inspect.getattr_static(cls, "optimality") in _FROM_OBJECTIVE or not _defines(
        cls, "optimality"
    ):  # differentiate the objective directly, without a second reparametrization
        optimality_fn = torch.func.grad(_objective, argnums=0)
    solver = custom_root(optimality_fn, argnums=1, has_aux=True, solve=cls.linear_solve)(_solve)

    def solve(self: ImplicitMetaGradientModule, *input: Any, **kwargs: Any) -> Any:
        names, params, meta_names, metas = _named(self)
        optimal, output = solver(params, metas, self, names, meta_names, *input, **kwargs)
        swap_state(self, _pairs(names, optimal))
        return output

    solve.__doc__ = cls._raw_solve.__doc__
    solve.__name__ = "solve"
    solve.__qualname__ = f"{cls.__qualname__}.solve"
    cls._wrapped_solve = solve
    cls.solve = solve  # type: ignore[method-assign]  # the implicit-gradient wrapper
    return cls
