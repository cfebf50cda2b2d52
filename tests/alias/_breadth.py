"""The optimizers beyond TorchOpt's eight, as cases for the generic tests.

Each group of aliases lists its configurations in ``tests/alias/_cases_<group>.py`` (a ``CASES``
list); :data:`ALL` collects them. The generic tests (``test_breadth_generic.py``) run every case
through in-place vs out-of-place steps, ``gradcheck``, the layout matrix, the class and ``Meta*``
forms and ``torch.compile``; each group's own tests check the formula against references.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import torchopt_lite


@dataclass(frozen=True)
class BreadthCase:
    """An alias configuration (and its ``torch.optim`` twin, when torch has the same math)."""

    alias: str
    kwargs: dict[str, Any]
    desc: str
    torch_cls: type[torch.optim.Optimizer] | None = None
    torch_kwargs: dict[str, Any] | None = None
    complex_ok: bool = True
    needs_value: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.alias}-{self.desc}"

    def make(self, **overrides: Any) -> torchopt_lite.base.GradientTransformation:
        return _alias(self.alias)(**{**self.kwargs, **overrides})


def _alias(name: str) -> Any:
    if hasattr(torchopt_lite, name):
        return getattr(torchopt_lite, name)
    return getattr(importlib.import_module(f"torchopt_lite.alias.{name}"), name)


def _collect() -> list[BreadthCase]:
    here = Path(__file__).parent
    cases: list[BreadthCase] = []
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("_cases_"):
            cases.extend(importlib.import_module(f"tests.alias.{info.name}").CASES)
    return cases


ALL = _collect()


# The torch.optim-style class and the meta-optimizer of each alias (``Meta`` + the class name).
CLASS_NAMES = {
    "adabelief": "AdaBelief", "adafactor": "Adafactor", "adamaxw": "AdamaxW", "adan": "Adan",
    "amsgrad": "AMSGrad", "asgd": "ASGD", "fromage": "Fromage", "lamb": "Lamb", "lars": "Lars",
    "lion": "Lion", "muon": "Muon", "nadam": "NAdam", "nadamw": "NAdamW", "noisy_sgd": "NoisySGD",
    "novograd": "NovoGrad", "optimistic_adam": "OptimisticAdam",
    "optimistic_gradient_descent": "OptimisticGradientDescent", "polyak_sgd": "PolyakSGD",
    "prodigy": "Prodigy", "rprop": "Rprop", "sam": "SAM", "schedule_free_adamw":
    "ScheduleFreeAdamW", "schedule_free_sgd": "ScheduleFreeSGD", "sign_sgd": "SignSGD",
    "signum": "Signum", "sm3": "SM3", "sophia": "Sophia", "yogi": "Yogi",
}  # fmt: skip


def class_of(case: BreadthCase, meta: bool = False) -> Any:
    """The class form of ``case``'s alias, or ``None`` before it is exported."""
    name = CLASS_NAMES.get(case.alias)
    return None if name is None else getattr(torchopt_lite, ("Meta" if meta else "") + name, None)
