"""Argument checks shared by MetaOptimizer and the functional inner loops."""

from __future__ import annotations

from typing import Any


def check_truncate_every(caller: str, truncate_every: Any) -> None:
    """``truncate_every`` is ``None`` or an int >= 1 (a bool is not an int here)."""
    if truncate_every is None:
        return
    if isinstance(truncate_every, bool) or not isinstance(truncate_every, int):
        raise TypeError(
            f"{caller}: truncate_every must be None or an int >= 1; "
            f"got {type(truncate_every).__name__}."
        )
    if truncate_every < 1:
        raise ValueError(
            f"{caller}: truncate_every must be None or an int >= 1; got {truncate_every}."
        )
