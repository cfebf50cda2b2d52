"""torchopt_lite: differentiable optimization for PyTorch.

Optax-style functional optimizers over pytrees, a ``torch.optim``-style API and meta-optimizers
built from the same math, implicit and zero-order differentiation. The public names follow
TorchOpt 0.7.3, so ``import torchopt_lite as torchopt`` runs code written for TorchOpt.
"""

from torchopt_lite import (
    _paths,
    accelerated_op,
    alias,
    base,
    clip,
    combine,
    diff,
    distributed,
    hook,
    interop,
    linalg,
    linear_solve,
    nn,
    optim,
    pytree,
    schedule,
    transform,
    typing,
    update,
    utils,
    visual,
)
from torchopt_lite.accelerated_op import is_available as accelerated_op_available
from torchopt_lite.alias import adadelta, adagrad, adam, adamax, adamw, radam, rmsprop, sgd
from torchopt_lite.clip import clip_grad_norm
from torchopt_lite.combine import chain
from torchopt_lite.hook import register_hook
from torchopt_lite.optim import (
    SGD,
    AdaDelta,
    Adadelta,
    AdaGrad,
    Adagrad,
    Adam,
    AdaMax,
    Adamax,
    AdamW,
    FuncOptimizer,
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
    Optimizer,
    RAdam,
    RMSProp,
    RMSprop,
    from_torch,
    to_torch,
)
from torchopt_lite.transform import nan_to_num
from torchopt_lite.update import apply_updates
from torchopt_lite.utils import (
    extract_state_dict,
    module_clone,
    module_detach_,
    recover_state_dict,
    stop_gradient,
)
from torchopt_lite.version import __version__

__all__ = [
    # functional optimizers
    "adam",
    "adamax",
    "adadelta",
    "radam",
    "adamw",
    "adagrad",
    "rmsprop",
    "sgd",
    # transformations and composition
    "clip_grad_norm",
    "nan_to_num",
    "register_hook",
    "chain",
    "apply_updates",
    # torch.optim-style optimizers
    "Optimizer",
    "SGD",
    "Adam",
    "AdaMax",
    "Adamax",
    "AdaDelta",
    "Adadelta",
    "RAdam",
    "AdamW",
    "AdaGrad",
    "Adagrad",
    "RMSProp",
    "RMSprop",
    "FuncOptimizer",
    # bridges from and to torch.optim
    "from_torch",
    "to_torch",
    # meta-optimizers
    "MetaOptimizer",
    "MetaSGD",
    "MetaAdam",
    "MetaAdaMax",
    "MetaAdamax",
    "MetaAdaDelta",
    "MetaAdadelta",
    "MetaRAdam",
    "MetaAdamW",
    "MetaAdaGrad",
    "MetaAdagrad",
    "MetaRMSProp",
    "MetaRMSprop",
    # module state utilities
    "extract_state_dict",
    "recover_state_dict",
    "stop_gradient",
    "module_clone",
    "module_detach_",
    "accelerated_op_available",
]

_paths.register()  # TorchOpt's per-optimizer module paths (torchopt.optim.meta.adam, ...)
