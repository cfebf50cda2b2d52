"""Where a module keeps its tensors: the parameter and buffer dicts of every submodule."""

from __future__ import annotations

from torch import nn

from torchopt_lite.typing import ModuleTensorContainers, TensorContainer


def extract_module_containers(
    module: nn.Module, with_buffers: bool = True
) -> tuple[ModuleTensorContainers, ModuleTensorContainers]:
    """The parameter and buffer dicts of every submodule (references, not copies).

    Submodules are visited once each, in ``module.modules()`` order; empty dicts are skipped.

    Args:
        module: the module.
        with_buffers: also collect the buffer dicts (else the second tuple is empty).

    Returns:
        ``(param_containers, buffer_containers)``: tuples of the modules' own ``_parameters`` and
        ``_buffers`` dicts, so writing into them changes the module.

    Example:
        >>> params, buffers = extract_module_containers(torch.nn.Linear(2, 1))
        >>> [sorted(c) for c in params], buffers
        ([['bias', 'weight']], ())
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            "extract_module_containers: Unexpected class of target; expected an nn.Module, "
            f"got {type(module).__name__}."
        )
    params: list[TensorContainer] = []
    buffers: list[TensorContainer] = []
    for submodule in module.modules():  # modules() already skips repeated submodules
        if submodule._parameters:
            params.append(submodule._parameters)  # type: ignore[arg-type]  # Parameter <: Tensor
        if with_buffers and submodule._buffers:
            buffers.append(submodule._buffers)
    return tuple(params), tuple(buffers)
