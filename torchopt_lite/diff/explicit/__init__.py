"""Explicit differentiation: unrolled inner loops on ``torch.func``, batched with ``vmap``."""

from torchopt_lite.diff.explicit.inner_loop import (
    InnerLoopResult,
    batched_inner_loop,
    functional_loss,
    inner_loop,
)
from torchopt_lite.diff.explicit.learned_lr import per_parameter_sgd

__all__ = [
    "inner_loop",
    "batched_inner_loop",
    "InnerLoopResult",
    "functional_loss",
    "per_parameter_sgd",
]
