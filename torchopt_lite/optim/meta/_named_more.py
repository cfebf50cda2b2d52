"""The meta-optimizers of the optimizers beyond TorchOpt's eight, each built from its alias.

Each class is its alias's signature after ``module``, with ``moment_requires_grad=True`` (the
meta-learning default) and :class:`MetaOptimizer`'s ``first_order``/``truncate_every``;
``tests/explicit/test_meta_signatures.py`` compares every signature with its alias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchopt_lite import alias
from torchopt_lite.base import GradientTransformation
from torchopt_lite.optim.meta.base import MetaOptimizer
from torchopt_lite.transform.add_decayed_weights import Mask
from torchopt_lite.typing import ScalarOrSchedule


class MetaAdaBelief(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.adabelief` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-16,
        eps_root: float = 1e-16,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adabelief(
                lr=lr,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdafactor(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.adafactor` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.01,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 0.001),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adafactor(
                lr=lr,
                beta2_decay=beta2_decay,
                eps=eps,
                d=d,
                weight_decay=weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdamaxW(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.adamaxw` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0001,
        *,
        mask: Mask | None = None,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adamaxw(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                mask=mask,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAdan(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.adan` on a module."""

    def __init__(
        self,
        module: nn.Module,
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
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.adan(
                lr=lr,
                b1=b1,
                b2=b2,
                b3=b3,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                mask=mask,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaAMSGrad(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.amsgrad` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        *,
        eps_root: float = 0.0,
        bias_corrected_max: bool = False,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.amsgrad(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                eps_root=eps_root,
                bias_corrected_max=bias_corrected_max,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaASGD(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.asgd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.01,
        lambd: float = 0.0001,
        alpha: float = 0.75,
        t0: float = 1000000.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.asgd(
                lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaFromage(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.fromage` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: float = 0.01,
        min_norm: float = 1e-06,
        *,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.fromage(lr=lr, min_norm=min_norm),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaLamb(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.lamb` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-06,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.lamb(
                lr=lr,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaLars(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.lars` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.lars(
                lr=lr,
                weight_decay=weight_decay,
                trust_coefficient=trust_coefficient,
                eps=eps,
                momentum=momentum,
                nesterov=nesterov,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaLion(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.lion` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.001,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.lion(
                lr=lr,
                betas=betas,
                weight_decay=weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaMuon(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.muon` on a module."""

    def __init__(
        self,
        module: nn.Module,
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
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.muon(
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
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaNAdam(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.nadam` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        momentum_decay: float = 0.004,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.nadam(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaNAdamW(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.nadamw` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0001,
        momentum_decay: float = 0.004,
        *,
        mask: Mask | None = None,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.nadamw(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                momentum_decay=momentum_decay,
                mask=mask,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaNoisySGD(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.noisy_sgd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        eta: float = 0.01,
        gamma: float = 0.55,
        seed: int = 0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.noisy_sgd(
                lr=lr, eta=eta, gamma=gamma, seed=seed, weight_decay=weight_decay, maximize=maximize
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaNovoGrad(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.novograd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.25,
        eps: float = 1e-06,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.novograd(
                lr=lr,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaOptimisticAdam(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.optimistic_adam` on a module."""

    def __init__(
        self,
        module: nn.Module,
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
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.optimistic_adam(
                lr=lr,
                optimism=optimism,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaOptimisticGradientDescent(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.optimistic_gradient_descent` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        alpha: float | Tensor = 1.0,
        beta: float | Tensor = 1.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.optimistic_gradient_descent(
                lr=lr, alpha=alpha, beta=beta, weight_decay=weight_decay, maximize=maximize
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaPolyakSGD(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.polyak_sgd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1.0,
        max_lr: float | Tensor = 1.0,
        f_min: float | Tensor = 0.0,
        eps: float | Tensor = 0.0,
        variant: str = "sps",
        *,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.polyak_sgd(lr=lr, max_lr=max_lr, f_min=f_min, eps=eps, variant=variant),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaProdigy(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.prodigy` on a module."""

    def __init__(
        self,
        module: nn.Module,
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
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.prodigy(
                lr=lr,
                betas=betas,
                beta3=beta3,
                eps=eps,
                estim_lr0=estim_lr0,
                estim_lr_coef=estim_lr_coef,
                weight_decay=weight_decay,
                safeguard_warmup=safeguard_warmup,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaRprop(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.rprop` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: float | Tensor = 0.01,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-06, 50.0),
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.rprop(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaScheduleFreeAdamW(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.schedule_free_adamw` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.0025,
        warmup_steps: int | None = None,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.schedule_free_adamw(
                lr=lr,
                warmup_steps=warmup_steps,
                b1=b1,
                b2=b2,
                eps=eps,
                weight_decay=weight_decay,
                weight_lr_power=weight_lr_power,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaScheduleFreeSGD(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.schedule_free_sgd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 1.0,
        warmup_steps: int | None = None,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.schedule_free_sgd(
                lr=lr,
                warmup_steps=warmup_steps,
                b1=b1,
                weight_decay=weight_decay,
                weight_lr_power=weight_lr_power,
                maximize=maximize,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaSignSGD(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.sign_sgd` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.sign_sgd(lr=lr, weight_decay=weight_decay, maximize=maximize),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaSignum(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.signum` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule,
        beta: float = 0.9,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.signum(
                lr=lr,
                beta=beta,
                weight_decay=weight_decay,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaSM3(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.sm3` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        momentum: float = 0.9,
        eps: float = 1e-08,
        *,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.sm3(
                lr=lr,
                momentum=momentum,
                eps=eps,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaYogi(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.yogi` on a module."""

    def __init__(
        self,
        module: nn.Module,
        lr: ScalarOrSchedule = 0.001,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 0.001,
        *,
        eps_root: float = 0.0,
        initial_accumulator_value: float = 1e-06,
        maximize: bool = False,
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.yogi(
                lr=lr,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                initial_accumulator_value=initial_accumulator_value,
                maximize=maximize,
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaSophia(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.sophia` on a module."""

    def __init__(
        self,
        module: nn.Module,
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
        moment_requires_grad: bool = True,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.sophia(
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
                moment_requires_grad=moment_requires_grad,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )


class MetaSAM(MetaOptimizer):
    """Differentiable :func:`torchopt_lite.sam` on a module."""

    def __init__(
        self,
        module: nn.Module,
        optimizer: GradientTransformation,
        adv_optimizer: GradientTransformation,
        sync_period: int = 2,
        reset_state: bool = True,
        opaque_mode: bool = False,
        *,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        super().__init__(
            module,
            alias.sam(
                optimizer=optimizer,
                adv_optimizer=adv_optimizer,
                sync_period=sync_period,
                reset_state=reset_state,
                opaque_mode=opaque_mode,
            ),
            first_order=first_order,
            truncate_every=truncate_every,
        )
