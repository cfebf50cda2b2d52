"""A transformation with the dispatch's fused renderings switched off (the reference path)."""

from __future__ import annotations

from unittest import mock

from torchopt_lite import _dispatch
from torchopt_lite.base import ChainedGradientTransformation, GradientTransformation


def generic(t: GradientTransformation) -> ChainedGradientTransformation:
    """``t``'s parts chained with no rule: every part runs its own update (multi-tensor ops)."""
    parts = t.transformations if isinstance(t, ChainedGradientTransformation) else (t,)
    with mock.patch.dict(_dispatch.RULES, clear=True):
        return ChainedGradientTransformation(*parts)
