"""Meta-optimizers: differentiable (unrolled) optimizer steps on an ``nn.Module``."""

from torchopt_lite.optim.meta._named import (
    MetaAdaDelta,
    MetaAdaGrad,
    MetaAdam,
    MetaAdaMax,
    MetaAdamW,
    MetaRAdam,
    MetaRMSProp,
    MetaSGD,
)
from torchopt_lite.optim.meta.base import MetaOptimizer

# TorchOpt's double spellings.
MetaAdadelta = MetaAdaDelta
MetaAdagrad = MetaAdaGrad
MetaAdamax = MetaAdaMax
MetaRMSprop = MetaRMSProp

__all__ = [
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
