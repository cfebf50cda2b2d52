"""TorchOpt's accelerated-op switch: here the fused multi-tensor kernels of PyTorch itself.

TorchOpt 0.7.3 ships a C++/CUDA extension for Adam. torchopt_lite needs no extension: the
dispatch runs in-place ``adam``/``adamw`` steps with ``torch._fused_adam_``/``_fused_adamw_``
where those kernels compute as ``torch.optim`` does, so the accelerated path is available
wherever PyTorch's fused Adam is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from torchopt_lite.accelerated_op.adam_op import AdamOp
from torchopt_lite.typing import Device

__all__ = ["is_available", "AdamOp"]

_FUSED_DEVICE_TYPES = ("cpu", "cuda")


def is_available(devices: Device | Iterable[Device] | None = None) -> bool:
    """Whether the fused Adam kernel serves every device in ``devices`` (default: CPU).

    Example:
        >>> is_available()
        True
        >>> is_available("meta")
        False
    """
    if devices is None:
        devices = [torch.device("cpu")]
    elif isinstance(devices, torch.device | str | int):
        devices = [devices]
    for device in devices:
        dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if dev.type not in _FUSED_DEVICE_TYPES or not hasattr(torch, "_fused_adam_"):
            return False
        if dev.type == "cuda" and not torch.cuda.is_available():
            return False
    return True
