"""torchopt_lite: differentiable optimization for PyTorch."""

from torchopt_lite import base, combine, pytree, typing, update
from torchopt_lite.combine import chain
from torchopt_lite.update import apply_updates
from torchopt_lite.version import __version__

__all__ = ["apply_updates", "chain", "__version__"]
