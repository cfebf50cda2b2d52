"""The named meta-optimizers: TorchOpt's signatures, each built from its alias (math there)."""

from __future__ import annotations

from typing import Any

from torch import nn

from torchopt_lite import alias
from torchopt_lite.optim.meta.base import MetaOptimizer
from torchopt_lite.typing import ScalarOrSchedule

# Each class body is its TorchOpt signature plus ``first_order``/``truncate_every`` (see
# MetaOptimizer) and one call to the alias; tests/explicit/test_meta_signatures.py compares every
# signature with its alias and lists the deliberate differences.


class MetaSGD(MetaOptimizer):
    """Differentiable SGD on a module: :func:`torchopt_lite.sgd` inside :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first, TorchOpt's positional order (``weight_decay``
    before ``dampening``) and ``moment_requires_grad=True``.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        moment_requires_grad: bool = True,
        maximize: bool = False,
        *,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.sgd(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                moment_requires_grad=moment_requires_grad,
                maximize=maximize,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdam(MetaOptimizer):
    """Differentiable Adam on a module: :func:`torchopt_lite.adam` inside :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first and ``moment_requires_grad=True``.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        eps_root: float = 0.0,
        moment_requires_grad: bool = True,
        maximize: bool = False,
        use_accelerated_op: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adam(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                eps_root=eps_root,
                moment_requires_grad=moment_requires_grad,
                maximize=maximize,
                use_accelerated_op=use_accelerated_op,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdamW(MetaOptimizer):
    """Differentiable AdamW on a module: :func:`torchopt_lite.adamw` in :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first (``moment_requires_grad=False``, as in TorchOpt).
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        eps_root: float = 0.0,
        mask: Any = None,
        moment_requires_grad: bool = False,
        maximize: bool = False,
        use_accelerated_op: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adamw(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                eps_root=eps_root,
                mask=mask,
                moment_requires_grad=moment_requires_grad,
                maximize=maximize,
                use_accelerated_op=use_accelerated_op,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaRMSProp(MetaOptimizer):
    """Differentiable RMSProp on a module: :func:`torchopt_lite.rmsprop` in :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        initial_scale: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.rmsprop(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
                initial_scale=initial_scale,
                nesterov=nesterov,
                maximize=maximize,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdaGrad(MetaOptimizer):
    """Differentiable AdaGrad on a module: :func:`torchopt_lite.adagrad` in :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adagrad(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                maximize=maximize,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdaDelta(MetaOptimizer):
    """Differentiable AdaDelta on a module: :func:`torchopt_lite.adadelta` in a MetaOptimizer.

    Differs from the alias: ``module`` first, ``lr=1.0`` (TorchOpt's meta default) and
    ``moment_requires_grad=True``.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adadelta(
                lr=lr,
                rho=rho,
                eps=eps,
                weight_decay=weight_decay,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdaMax(MetaOptimizer):
    """Differentiable AdaMax on a module: :func:`torchopt_lite.adamax` in :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first, ``lr=2e-3`` and ``eps=1e-8`` (TorchOpt's meta
    defaults) and ``moment_requires_grad=True``.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adamax(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaRAdam(MetaOptimizer):
    """Differentiable RAdam on a module: :func:`torchopt_lite.radam` inside :class:`MetaOptimizer`.

    Differs from the alias: ``module`` first, ``eps=1e-8`` (TorchOpt's meta default) and
    ``moment_requires_grad=True``.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.radam(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )
