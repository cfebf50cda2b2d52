"""Every Meta* class keeps TorchOpt's signature and is built from its alias (parity test)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import torchopt_lite
from torchopt_lite.optim import meta

P = inspect.Parameter
POS, KW = P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY
REQUIRED = P.empty
BETAS = (0.9, 0.999)

# TorchOpt 0.7.3's Meta* signatures after ``module`` (REFERENCE.md 1.6): (name, default, kind).
TORCHOPT: dict[str, list[tuple[str, Any, Any]]] = {
    "MetaSGD": [("lr", REQUIRED, POS), ("momentum", 0.0, POS), ("weight_decay", 0.0, POS),
                ("dampening", 0.0, POS), ("nesterov", False, POS),
                ("moment_requires_grad", True, POS), ("maximize", False, POS)],
    "MetaAdam": [("lr", 1e-3, POS), ("betas", BETAS, POS), ("eps", 1e-8, POS),
                 ("weight_decay", 0.0, POS), ("eps_root", 0.0, KW),
                 ("moment_requires_grad", True, KW), ("maximize", False, KW),
                 ("use_accelerated_op", False, KW)],
    "MetaAdamW": [("lr", 1e-3, POS), ("betas", BETAS, POS), ("eps", 1e-8, POS),
                  ("weight_decay", 1e-2, POS), ("eps_root", 0.0, KW), ("mask", None, KW),
                  ("moment_requires_grad", False, KW), ("maximize", False, KW),
                  ("use_accelerated_op", False, KW)],
    "MetaRMSProp": [("lr", 1e-2, POS), ("alpha", 0.99, POS), ("eps", 1e-8, POS),
                    ("weight_decay", 0.0, POS), ("momentum", 0.0, POS), ("centered", False, POS),
                    ("initial_scale", 0.0, KW), ("nesterov", False, KW), ("maximize", False, KW)],
    "MetaAdaGrad": [("lr", 1e-2, POS), ("lr_decay", 0.0, POS), ("weight_decay", 0.0, POS),
                    ("initial_accumulator_value", 0.0, POS), ("eps", 1e-10, POS),
                    ("maximize", False, KW)],
    "MetaAdaDelta": [("lr", 1.0, POS), ("rho", 0.9, POS), ("eps", 1e-6, POS),
                     ("weight_decay", 0.0, POS), ("moment_requires_grad", True, KW)],
    "MetaAdaMax": [("lr", 2e-3, POS), ("betas", BETAS, POS), ("eps", 1e-8, POS),
                   ("weight_decay", 0.0, POS), ("moment_requires_grad", True, KW)],
    "MetaRAdam": [("lr", 1e-3, POS), ("betas", BETAS, POS), ("eps", 1e-8, POS),
                  ("weight_decay", 0.0, POS), ("moment_requires_grad", True, KW)],
}  # fmt: skip

ALIAS = {
    "MetaSGD": "sgd",
    "MetaAdam": "adam",
    "MetaAdamW": "adamw",
    "MetaRMSProp": "rmsprop",
    "MetaAdaGrad": "adagrad",
    "MetaAdaDelta": "adadelta",
    "MetaAdaMax": "adamax",
    "MetaRAdam": "radam",
}

# Deliberate differences from the alias, all inherited from TorchOpt's meta classes: the
# defaults below, and MetaSGD's positional order (weight_decay before dampening, no ``*``).
DEFAULTS_DIFFER = {
    "MetaSGD": {"moment_requires_grad": True},
    "MetaAdam": {"moment_requires_grad": True},
    "MetaAdaDelta": {"lr": 1.0, "moment_requires_grad": True},
    "MetaAdaMax": {"lr": 2e-3, "eps": 1e-8, "moment_requires_grad": True},
    "MetaRAdam": {"eps": 1e-8, "moment_requires_grad": True},
}
# Ours beyond TorchOpt, keyword-only at the end of every Meta* signature.
EXTRAS = [("first_order", False, KW), ("truncate_every", None, KW)]


def params_of(fn: Any, skip: int) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.default, p.kind) for p in list(sig.parameters.values())[skip:]]


@pytest.mark.parametrize("name", sorted(TORCHOPT))
def test_signature_is_torchopts_plus_extras(name: str) -> None:
    got = params_of(getattr(meta, name).__init__, skip=2)  # self, module
    assert got == TORCHOPT[name] + EXTRAS


@pytest.mark.parametrize("name", sorted(TORCHOPT))
def test_same_arguments_and_defaults_as_alias(name: str) -> None:
    alias = params_of(getattr(torchopt_lite, ALIAS[name]), skip=0)
    ours = {n: d for n, d, _ in params_of(getattr(meta, name).__init__, skip=2)}
    assert set(ours) == {n for n, _, _ in alias} | {n for n, _, _ in EXTRAS}
    for arg, default, _ in alias:
        want = DEFAULTS_DIFFER.get(name, {}).get(arg, default)
        assert ours[arg] == want, f"{name}.{arg}: {ours[arg]!r} vs alias {default!r}"
    order = [n for n in ours if n not in dict.fromkeys(n for n, _, _ in EXTRAS)]
    alias_order = [n for n, _, _ in alias]
    if name == "MetaSGD":
        alias_order[2], alias_order[3] = alias_order[3], alias_order[2]
    assert order == alias_order


def test_double_spellings_are_the_same_classes() -> None:
    assert meta.MetaRMSprop is meta.MetaRMSProp
    assert meta.MetaAdagrad is meta.MetaAdaGrad
    assert meta.MetaAdadelta is meta.MetaAdaDelta
    assert meta.MetaAdamax is meta.MetaAdaMax
    from tests.alias._breadth import CLASS_NAMES

    more = {"Meta" + c for c in CLASS_NAMES.values() if hasattr(meta, "Meta" + c)}
    assert set(meta.__all__) == {*TORCHOPT, *more, "MetaOptimizer", "MetaRMSprop", "MetaAdagrad",
                                 "MetaAdadelta", "MetaAdamax"}  # fmt: skip
