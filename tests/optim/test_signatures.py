"""Signature parity: every torch.optim-style class against the alias it is built from.

Drift between a class and its alias fails here. The deliberate differences (TorchOpt 0.7.3's own)
are listed explicitly; anything else must match in name, order, kind and default.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import torchopt_lite
from tests.optim._helpers import OOP_CLASSES

# Alias-only parameters the OOP classes do not take (they own plain leaf tensors). TorchOpt's
# rmsprop and adagrad have no moment_requires_grad at all.
ALIAS_ONLY = {
    name: set() if name in ("rmsprop", "adagrad") else {"moment_requires_grad"}
    for name in OOP_CLASSES
}
# OOP-only defaults (TorchOpt's OOP classes use torch.optim's values; the aliases do not).
OOP_DEFAULTS = {
    "adadelta": {"lr": 1.0},  # alias: 1e-3
    "adamax": {"lr": 2e-3, "eps": 1e-8},  # alias: 1e-3, 1e-6
    "radam": {"eps": 1e-8},  # alias: 1e-6
}
# TorchOpt's SGD class swaps weight_decay and dampening relative to its alias.
OOP_ORDER = {
    "sgd": ["lr", "momentum", "weight_decay", "dampening", "nesterov", "maximize"],
}
# Parameters positional in the alias and in the class but keyword-only in neither, or the
# reverse: TorchOpt's SGD class has no ``*`` (maximize is positional-or-keyword).
OOP_KIND = {"sgd": {"maximize": inspect.Parameter.POSITIONAL_OR_KEYWORD}}


def _expected_oop_parameters(alias_name: str) -> list[inspect.Parameter]:
    alias_sig = inspect.signature(getattr(torchopt_lite, alias_name))
    params = [p for name, p in alias_sig.parameters.items() if name not in ALIAS_ONLY[alias_name]]
    defaults = OOP_DEFAULTS.get(alias_name, {})
    kinds = OOP_KIND.get(alias_name, {})
    params = [
        p.replace(default=defaults.get(p.name, p.default), kind=kinds.get(p.name, p.kind))
        for p in params
    ]
    if alias_name in OOP_ORDER:
        by_name = {p.name: p for p in params}
        params = [by_name[name] for name in OOP_ORDER[alias_name]]
    return params


@pytest.mark.parametrize("alias_name", list(OOP_CLASSES))
def test_oop_signature_matches_alias(alias_name: str) -> None:
    cls = OOP_CLASSES[alias_name]
    got = list(inspect.signature(cls.__init__).parameters.values())
    assert [p.name for p in got[:2]] == ["self", "params"]
    got = got[2:]
    expected = _expected_oop_parameters(alias_name)
    assert [p.name for p in got] == [p.name for p in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.default == e.default, (alias_name, g.name)
        assert g.kind == e.kind, (alias_name, g.name)


def test_deliberate_differences_are_real() -> None:
    """Each listed difference exists in the alias (a stale entry would hide nothing)."""
    for alias_name, defaults in OOP_DEFAULTS.items():
        alias_params = inspect.signature(getattr(torchopt_lite, alias_name)).parameters
        for name, value in defaults.items():
            assert alias_params[name].default != value, (alias_name, name)
    for alias_name, names in ALIAS_ONLY.items():
        assert names <= set(inspect.signature(getattr(torchopt_lite, alias_name)).parameters)
    sgd_order = list(inspect.signature(torchopt_lite.sgd).parameters)
    assert sgd_order.index("dampening") < sgd_order.index("weight_decay")


@pytest.mark.parametrize(
    ("cls", "alias_name"),
    [
        (torchopt_lite.AdaDelta, "adadelta"),
        (torchopt_lite.AdaMax, "adamax"),
        (torchopt_lite.RAdam, "radam"),
    ],
)
def test_oop_defaults_reach_the_alias(cls: type, alias_name: str) -> None:
    """The OOP default values are the ones the group's transformation is built with."""
    opt = cls([torch.zeros(2, requires_grad=True)])
    for name, value in OOP_DEFAULTS[alias_name].items():
        assert opt.defaults[name] == value
        assert opt.param_groups[0][name] == value


# -- the optimizers beyond TorchOpt's eight: the class is the alias's signature ------------------


def _more() -> list[str]:
    from tests.alias._breadth import CLASS_NAMES

    return [a for a, c in CLASS_NAMES.items() if hasattr(torchopt_lite, c)]


@pytest.mark.parametrize("alias_name", _more())
def test_more_oop_and_meta_signatures_match_alias(alias_name: str) -> None:
    """``Name(params, ...)`` takes the alias's parameters except ``moment_requires_grad``;
    ``MetaName(module, ...)`` takes all of them with ``moment_requires_grad=True`` plus
    ``first_order`` and ``truncate_every``."""
    from tests.alias._breadth import CLASS_NAMES

    alias_params = list(inspect.signature(getattr(torchopt_lite, alias_name)).parameters.values())
    cls = getattr(torchopt_lite, CLASS_NAMES[alias_name])
    got = list(inspect.signature(cls.__init__).parameters.values())[2:]
    assert got == [p for p in alias_params if p.name != "moment_requires_grad"]
    meta = getattr(torchopt_lite, "Meta" + CLASS_NAMES[alias_name])
    got = list(inspect.signature(meta.__init__).parameters.values())[2:]
    expected = [
        p.replace(default=True) if p.name == "moment_requires_grad" else p for p in alias_params
    ]
    kw = inspect.Parameter.KEYWORD_ONLY
    expected += [
        inspect.Parameter("first_order", kw, default=False, annotation="bool"),
        inspect.Parameter("truncate_every", kw, default=None, annotation="int | None"),
    ]
    assert got == expected
