"""torchopt_lite: differentiable optimization for PyTorch."""

from torchopt_lite import (
    alias,
    base,
    clip,
    combine,
    hook,
    pytree,
    schedule,
    transform,
    typing,
    update,
)
from torchopt_lite.alias import adadelta, adagrad, adam, adamax, adamw, radam, rmsprop, sgd
from torchopt_lite.clip import clip_grad_norm
from torchopt_lite.combine import chain
from torchopt_lite.hook import register_hook
from torchopt_lite.transform import nan_to_num
from torchopt_lite.update import apply_updates
from torchopt_lite.version import __version__

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "radam",
    "rmsprop",
    "sgd",
    "apply_updates",
    "chain",
    "clip_grad_norm",
    "nan_to_num",
    "register_hook",
    "__version__",
]
