"""The one dispatch: which rendering runs a step, decided once per step at the flatten boundary.

A leafwise transformation (or a chain of them) is a :class:`Plan`: its parts, each a
:class:`Leafwise` with a ``kind`` (:mod:`torchopt_lite._kinds`), and the *runs* of parts
that :data:`RULES` recognise (``flip, scale_by_adam, scale(-lr)`` is one Adam step). A step

1. flattens the trees once and checks leaves, parameters and state before anything is written;
2. puts the inputs in the form every rendering takes (complex leaves as real views; in place,
   buffers that alias nothing);
3. picks the ops namespace (foreach or per leaf, in place or pure) and, for each run, the first
   rendering of its rule that accepts the inputs: torch's fused kernel in place, the one-node
   Adam step out of place; any part not covered runs its own update with the namespace.

Every rendering computes the formula of the transforms (the kernels are checked against it by
the tests); none holds a copy of the math.
"""

from torchopt_lite._dispatch._boundary import PARAMS_REQUIRED, Facts
from torchopt_lite._dispatch._plan import Leafwise, Plan, linear_scale
from torchopt_lite._dispatch._rules import RULES
from torchopt_lite._dispatch._state import state_check
from torchopt_lite._dispatch._step import apply, choose_ops, init, step, update

__all__ = [
    "PARAMS_REQUIRED",
    "RULES",
    "Facts",
    "Leafwise",
    "Plan",
    "apply",
    "choose_ops",
    "init",
    "linear_scale",
    "state_check",
    "step",
    "update",
]
