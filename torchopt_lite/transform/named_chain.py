"""A chain whose state is a dict keyed by each transformation's name (Optax's ``named_chain``)."""

from __future__ import annotations

from typing import Any

from torchopt_lite.base import GradientTransformation, extra_args_filter


def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Apply ``(name, transformation)`` pairs in order; the state is ``{name: state}``.

    Args:
        *transforms: ``(name, transformation)`` pairs with distinct string names.

    Returns:
        A transformation whose state is a ``dict`` from each name to that transformation's state.

    Raises:
        TypeError: an argument is not a ``(str, GradientTransformation)`` pair.
        ValueError: two names are equal.

    Example:
        >>> from torchopt_lite.transform import scale, trace
        >>> t = named_chain(("momentum", trace(0.9)), ("lr", scale(-0.1)))
        >>> g = torch.ones(1)
        >>> u, state = t.update(g, t.init(g))
        >>> list(state), u
        (['momentum', 'lr'], tensor([-0.1000]))
    """
    for pair in transforms:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], GradientTransformation)
        ):
            raise TypeError(
                "named_chain: every argument must be a (name, GradientTransformation) pair with "
                f"a str name; got {pair!r}."
            )
    names = [name for name, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain: names must be distinct; got {names}.")

    picks = [extra_args_filter(t.update) for _, t in transforms]

    def init_fn(params: Any) -> dict[str, Any]:
        return {name: t.init(params) for name, t in transforms}

    def update_fn(
        updates: Any,
        state: dict[str, Any],
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, dict[str, Any]]:
        if not isinstance(state, dict) or list(state) != names:
            got = list(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"named_chain: state must be a dict with keys {names}; got {got}; pass the "
                "state returned by this transformation's init()."
            )
        new_state = {}
        for (name, t), pick in zip(transforms, picks, strict=True):
            updates, new_state[name] = t.update(
                updates, state[name], params=params, inplace=inplace, **pick(extra_args)
            )
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)
