"""The ``torch.optim``-style classes of the optimizers beyond TorchOpt's eight.

Each class is its alias's signature over ``params`` (without ``moment_requires_grad``) and one
call to the alias; the math, the references and the differences are in the alias docstrings.
``tests/optim/test_signatures.py`` compares every signature with its alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from torchopt_lite import alias
from torchopt_lite.base import GradientTransformation
from torchopt_lite.optim.base import Optimizer
from torchopt_lite.transform.add_decayed_weights import Mask
from torchopt_lite.typing import ScalarOrSchedule

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


class AdaBelief(Optimizer):
    """:func:`torchopt_lite.adabelief` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-16,
        eps_root: float = 1e-16,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, b1=b1, b2=b2, eps=eps, eps_root=eps_root, maximize=maximize)
        super().__init__(params, alias.adabelief, defaults)


class Adafactor(Optimizer):
    """:func:`torchopt_lite.adafactor` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.01,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 0.001),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, alias.adafactor, defaults)


class AdamaxW(Optimizer):
    """:func:`torchopt_lite.adamaxw` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0001,
        *,
        mask: Mask | None = None,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, mask=mask, maximize=maximize
        )
        super().__init__(params, alias.adamaxw, defaults)


class Adan(Optimizer):
    """:func:`torchopt_lite.adan` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.98,
        b2: float = 0.92,
        b3: float = 0.99,
        eps: float = 1e-08,
        eps_root: float = 1e-08,
        weight_decay: float = 0.0,
        *,
        mask: Mask | None = None,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            b1=b1,
            b2=b2,
            b3=b3,
            eps=eps,
            eps_root=eps_root,
            weight_decay=weight_decay,
            mask=mask,
            maximize=maximize,
        )
        super().__init__(params, alias.adan, defaults)


class AMSGrad(Optimizer):
    """:func:`torchopt_lite.amsgrad` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        *,
        eps_root: float = 0.0,
        bias_corrected_max: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            eps_root=eps_root,
            bias_corrected_max=bias_corrected_max,
            maximize=maximize,
        )
        super().__init__(params, alias.amsgrad, defaults)


class ASGD(Optimizer):
    """:func:`torchopt_lite.asgd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.01,
        lambd: float = 0.0001,
        alpha: float = 0.75,
        t0: float = 1000000.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, alias.asgd, defaults)


class Fromage(Optimizer):
    """:func:`torchopt_lite.fromage` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: float = 0.01,
        min_norm: float = 1e-06,
    ) -> None:
        defaults = dict(lr=lr, min_norm=min_norm)
        super().__init__(params, alias.fromage, defaults)


class Lamb(Optimizer):
    """:func:`torchopt_lite.lamb` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-06,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, alias.lamb, defaults)


class Lars(Optimizer):
    """:func:`torchopt_lite.lars` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            momentum=momentum,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, alias.lars, defaults)


class Lion(Optimizer):
    """:func:`torchopt_lite.lion` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.001,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, alias.lion, defaults)


class Muon(Optimizer):
    """:func:`torchopt_lite.muon` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-07,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        adam_fallback: bool = True,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-08,
        adam_weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=ns_dtype,
            adam_fallback=adam_fallback,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, alias.muon, defaults)


class NAdam(Optimizer):
    """:func:`torchopt_lite.nadam` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        momentum_decay: float = 0.004,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, alias.nadam, defaults)


class NAdamW(Optimizer):
    """:func:`torchopt_lite.nadamw` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0001,
        momentum_decay: float = 0.004,
        *,
        mask: Mask | None = None,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            mask=mask,
            maximize=maximize,
        )
        super().__init__(params, alias.nadamw, defaults)


class NoisySGD(Optimizer):
    """:func:`torchopt_lite.noisy_sgd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        eta: float = 0.01,
        gamma: float = 0.55,
        seed: int = 0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, eta=eta, gamma=gamma, seed=seed, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, alias.noisy_sgd, defaults)


class NovoGrad(Optimizer):
    """:func:`torchopt_lite.novograd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.25,
        eps: float = 1e-06,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, alias.novograd, defaults)


class OptimisticAdam(Optimizer):
    """:func:`torchopt_lite.optimistic_adam` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: float | Tensor,
        optimism: float | Tensor | None = None,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-08,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = True,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            optimism=optimism,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, alias.optimistic_adam, defaults)


class OptimisticGradientDescent(Optimizer):
    """:func:`torchopt_lite.optimistic_gradient_descent` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        alpha: float | Tensor = 1.0,
        beta: float | Tensor = 1.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, beta=beta, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, alias.optimistic_gradient_descent, defaults)


class PolyakSGD(Optimizer):
    """:func:`torchopt_lite.polyak_sgd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1.0,
        max_lr: float | Tensor = 1.0,
        f_min: float | Tensor = 0.0,
        eps: float | Tensor = 0.0,
        variant: str = "sps",
    ) -> None:
        defaults = dict(lr=lr, max_lr=max_lr, f_min=f_min, eps=eps, variant=variant)
        super().__init__(params, alias.polyak_sgd, defaults)


class Prodigy(Optimizer):
    """:func:`torchopt_lite.prodigy` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-08,
        estim_lr0: float = 1e-06,
        estim_lr_coef: float = 1.0,
        weight_decay: float = 0.0,
        safeguard_warmup: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            beta3=beta3,
            eps=eps,
            estim_lr0=estim_lr0,
            estim_lr_coef=estim_lr_coef,
            weight_decay=weight_decay,
            safeguard_warmup=safeguard_warmup,
            maximize=maximize,
        )
        super().__init__(params, alias.prodigy, defaults)


class Rprop(Optimizer):
    """:func:`torchopt_lite.rprop` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: float | Tensor = 0.01,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-06, 50.0),
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
        super().__init__(params, alias.rprop, defaults)


class ScheduleFreeAdamW(Optimizer):
    """:func:`torchopt_lite.schedule_free_adamw` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.0025,
        warmup_steps: int | None = None,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            warmup_steps=warmup_steps,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            weight_lr_power=weight_lr_power,
            maximize=maximize,
        )
        super().__init__(params, alias.schedule_free_adamw, defaults)


class ScheduleFreeSGD(Optimizer):
    """:func:`torchopt_lite.schedule_free_sgd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 1.0,
        warmup_steps: int | None = None,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            warmup_steps=warmup_steps,
            b1=b1,
            weight_decay=weight_decay,
            weight_lr_power=weight_lr_power,
            maximize=maximize,
        )
        super().__init__(params, alias.schedule_free_sgd, defaults)


class SignSGD(Optimizer):
    """:func:`torchopt_lite.sign_sgd` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, alias.sign_sgd, defaults)


class Signum(Optimizer):
    """:func:`torchopt_lite.signum` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        beta: float = 0.9,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, beta=beta, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, alias.signum, defaults)


class SM3(Optimizer):
    """:func:`torchopt_lite.sm3` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        momentum: float = 0.9,
        eps: float = 1e-08,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, eps=eps, maximize=maximize)
        super().__init__(params, alias.sm3, defaults)


class Yogi(Optimizer):
    """:func:`torchopt_lite.yogi` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 0.001,
        *,
        eps_root: float = 0.0,
        initial_accumulator_value: float = 1e-06,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
        )
        super().__init__(params, alias.yogi, defaults)


class Sophia(Optimizer):
    """:func:`torchopt_lite.sophia` over ``params``."""

    def __init__(
        self,
        params: Params,
        lr: ScalarOrSchedule,
        b1: float = 0.965,
        b2: float = 0.99,
        eps: float = 1e-08,
        weight_decay: float = 0.0001,
        weight_decay_mask: Mask | None = None,
        gamma: float = 0.01,
        clip_threshold: float | None = 1.0,
        update_interval: int = 10,
        hessian_diagonal_fn: GradientTransformation | None = None,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mask=weight_decay_mask,
            gamma=gamma,
            clip_threshold=clip_threshold,
            update_interval=update_interval,
            hessian_diagonal_fn=hessian_diagonal_fn,
            maximize=maximize,
        )
        super().__init__(params, alias.sophia, defaults)


class SAM(Optimizer):
    """:func:`torchopt_lite.sam` over ``params``."""

    def __init__(
        self,
        params: Params,
        optimizer: GradientTransformation,
        adv_optimizer: GradientTransformation,
        sync_period: int = 2,
        reset_state: bool = True,
        opaque_mode: bool = False,
    ) -> None:
        defaults = dict(
            optimizer=optimizer,
            adv_optimizer=adv_optimizer,
            sync_period=sync_period,
            reset_state=reset_state,
            opaque_mode=opaque_mode,
        )
        super().__init__(params, alias.sam, defaults)
