from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def as_float(count: Any) -> Tensor:
    """The count as a float64 tensor (schedules accept ints and tensors alike)."""
    return torch.as_tensor(count).to(torch.float64)
