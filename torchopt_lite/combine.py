"""Compose transformations."""

from __future__ import annotations

from torchopt_lite.base import ChainedGradientTransformation, GradientTransformation, identity

__all__ = ["chain", "chain_flat"]


def chain(*transformations: GradientTransformation) -> GradientTransformation:
    """Apply transformations in order; nested chains are flattened.

    A chain of one transformation returns that transformation itself, and the empty chain is
    :func:`~torchopt_lite.base.identity`.

    Example:
        >>> import torchopt_lite as to
        >>> opt = to.chain(to.clip_grad_norm(max_norm=1.0), to.adam(lr=1e-3))
    """
    if not transformations:  # as in TorchOpt: the empty chain is the identity
        return identity()
    if len(transformations) == 1 and isinstance(transformations[0], GradientTransformation):
        return transformations[0]
    return ChainedGradientTransformation(*transformations)


def chain_flat(*transformations: GradientTransformation) -> GradientTransformation:
    """Same as :func:`chain` (TorchOpt name; every chain here already flattens once per step)."""
    return chain(*transformations)


# TorchOpt 0.7.3 reads its flat chain as ``chain.flat``; here it is the same one path.
chain.flat = chain_flat  # type: ignore[attr-defined]  # compatibility alias, not a dispatch switch
