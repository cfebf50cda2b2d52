"""Optax contrib's ``normalize`` (SAM's adversarial direction): updates over their global norm."""

from __future__ import annotations

from torchopt_lite.base import LeafwiseTransformation
from torchopt_lite.transform.normalize_by_update_norm import normalize_by_update_norm


def normalize() -> LeafwiseTransformation:
    r"""Divide the updates by their global :math:`\ell_2` norm (Optax contrib's ``normalize``).

    .. math:: u \leftarrow g / \lVert g \rVert_2

    :func:`normalize_by_update_norm` with ``scale_factor=1`` and ``eps=0``. As in Optax there is
    no epsilon: an all-zero gradient gives NaN.

    Example:
        >>> t = normalize()
        >>> t.update(torch.tensor([3.0, 4.0]), t.init(torch.zeros(2)))[0]
        tensor([0.6000, 0.8000])
    """
    return normalize_by_update_norm(1.0, eps=0.0)
