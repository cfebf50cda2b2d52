"""Type aliases shared across torchopt_lite (TorchOpt-compatible names)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

import torch
from optree.typing import PyTree, PyTreeTypeVar
from torch import Tensor
from torch.distributions import Distribution
from torch.futures import Future

from torchopt_lite.base import (
    ChainedGradientTransformation,
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    UninitializedState,
    Updates,
)

__all__ = [
    "GradientTransformation",
    "ChainedGradientTransformation",
    "EmptyState",
    "UninitializedState",
    "Params",
    "Updates",
    "OptState",
    "Scalar",
    "Numeric",
    "Schedule",
    "ScalarOrSchedule",
    "PyTree",
    "Tensor",
    "OptionalTensor",
    "ListOfTensors",
    "TupleOfTensors",
    "SequenceOfTensors",
    "TensorOrTensors",
    "TensorTree",
    "ListOfOptionalTensors",
    "TupleOfOptionalTensors",
    "SequenceOfOptionalTensors",
    "OptionalTensorOrOptionalTensors",
    "OptionalTensorTree",
    "TensorContainer",
    "ModuleTensorContainers",
    "Future",
    "LinearSolver",
    "Device",
    "Size",
    "Distribution",
    "SampleFunc",
    "Samplable",
]

T = TypeVar("T")

Device: TypeAlias = torch.device | str | int
Size: TypeAlias = torch.Size

Scalar: TypeAlias = float | int | bool
Numeric: TypeAlias = Tensor | Scalar
Schedule: TypeAlias = Callable[[Numeric], Numeric]
ScalarOrSchedule: TypeAlias = float | Numeric | Schedule

OptionalTensor: TypeAlias = Tensor | None
ListOfTensors: TypeAlias = list[Tensor]
TupleOfTensors: TypeAlias = tuple[Tensor, ...]
SequenceOfTensors: TypeAlias = Sequence[Tensor]
TensorOrTensors: TypeAlias = Tensor | Sequence[Tensor]
ListOfOptionalTensors: TypeAlias = list[OptionalTensor]
TupleOfOptionalTensors: TypeAlias = tuple[OptionalTensor, ...]
SequenceOfOptionalTensors: TypeAlias = Sequence[OptionalTensor]
OptionalTensorOrOptionalTensors: TypeAlias = OptionalTensor | Sequence[OptionalTensor]

# A nested structure (tuple, list, dict, NamedTuple, ...) whose leaves are tensors.
TensorTree: TypeAlias = Any
OptionalTensorTree: TypeAlias = Any
TensorContainer: TypeAlias = dict[str, OptionalTensor]
ModuleTensorContainers: TypeAlias = tuple[TensorContainer, ...]


LinearSolver: TypeAlias = Callable[[Callable[[Any], Any], Any], Any]
SampleFunc: TypeAlias = Callable[[Size], Tensor | Sequence[Numeric]]


@runtime_checkable
class Samplable(Protocol):
    """Anything with a ``sample(sample_shape)`` method, e.g. ``torch.distributions.Normal``."""

    def sample(self, sample_shape: Size = ...) -> Tensor | Sequence[Numeric]:
        """Draw a sample of the given shape."""


if torch.distributed.rpc.is_available():
    from torch.distributed.rpc import RRef

    __all__ += ["RRef"]

del PyTreeTypeVar, T
