"""The ``torch.optim``-style optimizers by name: a signature and the alias it is built from.

Each class keeps TorchOpt 0.7.3's ``__init__`` signature; the math is the alias's (see the
alias docstrings). ``tests/optim/test_signatures.py`` checks every signature against its alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from torchopt_lite import alias
from torchopt_lite.optim.base import Optimizer
from torchopt_lite.transform.add_decayed_weights import Mask
from torchopt_lite.typing import ScalarOrSchedule

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


class SGD(Optimizer):
    """:func:`torchopt_lite.sgd` over ``params`` (note TorchOpt's argument order here)."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, alias.sgd, defaults)


class Adam(Optimizer):
    """:func:`torchopt_lite.adam` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        eps_root: float = 0.0,
        maximize: bool = False,
        use_accelerated_op: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_root=eps_root,
            maximize=maximize, use_accelerated_op=use_accelerated_op,
        )  # fmt: skip
        super().__init__(params, alias.adam, defaults)


class AdamW(Optimizer):
    """:func:`torchopt_lite.adamw` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        eps_root: float = 0.0,
        mask: Mask | None = None,
        maximize: bool = False,
        use_accelerated_op: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_root=eps_root, mask=mask,
            maximize=maximize, use_accelerated_op=use_accelerated_op,
        )  # fmt: skip
        super().__init__(params, alias.adamw, defaults)


class RMSProp(Optimizer):
    """:func:`torchopt_lite.rmsprop` over ``params``."""

    def __init__(
        self,
        params: Params,
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
    ) -> None:
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, initial_scale=initial_scale, nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, alias.rmsprop, defaults)


class AdaGrad(Optimizer):
    """:func:`torchopt_lite.adagrad` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, alias.adagrad, defaults)


class AdaDelta(Optimizer):
    """:func:`torchopt_lite.adadelta` over ``params`` (TorchOpt's OOP default ``lr=1.0``)."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
        super().__init__(params, alias.adadelta, defaults)


class AdaMax(Optimizer):
    """:func:`torchopt_lite.adamax` over ``params`` (TorchOpt's OOP defaults differ: lr, eps)."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, alias.adamax, defaults)


class RAdam(Optimizer):
    """:func:`torchopt_lite.radam` over ``params`` (TorchOpt's OOP default ``eps=1e-8``)."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, alias.radam, defaults)
