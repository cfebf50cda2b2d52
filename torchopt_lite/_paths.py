"""TorchOpt 0.7.3's per-optimizer module paths, as aliases of the modules that hold the names.

TorchOpt keeps one file per optimizer and API (``torchopt.optim.meta.adam``); here the classes of
each API live together (``optim/_named.py``, ``optim/meta/_named.py``). A program that imports a
long path gets a module object holding the same classes.
"""

from __future__ import annotations

import importlib
import sys
import types

_OPTIMIZERS = {  # TorchOpt's file name -> the class names it defines
    "sgd": ("SGD",),
    "adam": ("Adam",),
    "adamw": ("AdamW",),
    "adamax": ("AdaMax", "Adamax"),
    "adadelta": ("AdaDelta", "Adadelta"),
    "adagrad": ("AdaGrad", "Adagrad"),
    "radam": ("RAdam",),
    "rmsprop": ("RMSProp", "RMSprop"),
}

# path under the package -> (the module that holds the names, the names)
PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"optim.{file}": ("optim", names) for file, names in _OPTIMIZERS.items()},
    **{
        f"optim.meta.{file}": ("optim.meta", tuple(f"Meta{n}" for n in names))
        for file, names in _OPTIMIZERS.items()
    },
    "optim.func.base": ("optim.func", ("FuncOptimizer",)),
    "transform.scale_by_schedule": ("transform", ("scale_by_schedule", "ScaleByScheduleState")),
    "transform.scale_by_stddev": ("transform", ("scale_by_stddev", "ScaleByRStdDevState")),
}


def register() -> None:
    """Put each alias module in ``sys.modules`` (and on its parent, unless that name is taken)."""
    for path, (source, names) in PATHS.items():
        full = f"torchopt_lite.{path}"
        if full in sys.modules:
            continue
        holder = importlib.import_module(f"torchopt_lite.{source}")
        doc = f"TorchOpt's ``torchopt.{path}``: {', '.join(names)} of ``torchopt_lite.{source}``."
        module = types.ModuleType(full, doc)
        for name in names:
            setattr(module, name, getattr(holder, name))
        setattr(module, "__all__", list(names))  # noqa: B010  (ModuleType does not declare it)
        sys.modules[full] = module
        parent_name, _, leaf = full.rpartition(".")
        parent = sys.modules[parent_name]
        if not hasattr(parent, leaf):  # transform.scale_by_schedule stays the function
            setattr(parent, leaf, module)
