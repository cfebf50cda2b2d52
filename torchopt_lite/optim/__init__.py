"""``torch.optim``-style optimizers, ``FuncOptimizer`` and the meta-optimizers."""

from torchopt_lite.optim import meta
from torchopt_lite.optim._grouped import GroupedAlias
from torchopt_lite.optim._named import SGD, AdaDelta, AdaGrad, Adam, AdaMax, AdamW, RAdam, RMSProp
from torchopt_lite.optim._torch_bridge import from_torch, to_torch
from torchopt_lite.optim.base import Optimizer
from torchopt_lite.optim.func import FuncOptimizer
from torchopt_lite.optim.meta import (
    MetaAdaDelta,
    MetaAdadelta,
    MetaAdaGrad,
    MetaAdagrad,
    MetaAdam,
    MetaAdaMax,
    MetaAdamax,
    MetaAdamW,
    MetaOptimizer,
    MetaRAdam,
    MetaRMSProp,
    MetaRMSprop,
    MetaSGD,
)

# TorchOpt's double spellings.
Adadelta = AdaDelta
Adagrad = AdaGrad
Adamax = AdaMax
RMSprop = RMSProp

__all__ = [
    "Optimizer",
    "FuncOptimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSProp",
    "RMSprop",
    "AdaGrad",
    "Adagrad",
    "AdaDelta",
    "Adadelta",
    "AdaMax",
    "Adamax",
    "RAdam",
    # bridges from and to torch.optim
    "from_torch",
    "to_torch",
    "GroupedAlias",
    "meta",
    "MetaOptimizer",
    "MetaSGD",
    "MetaAdam",
    "MetaAdamW",
    "MetaRMSProp",
    "MetaRMSprop",
    "MetaAdaGrad",
    "MetaAdagrad",
    "MetaAdaDelta",
    "MetaAdadelta",
    "MetaAdaMax",
    "MetaAdamax",
    "MetaRAdam",
]
