"""L-BFGS with a fixed step (the line search needs ``value_fn``, which the generic tests lack)."""

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("lbfgs", {"lr": 0.1, "linesearch": None}, "fixed_lr"),
    BreadthCase(
        "lbfgs",
        {"lr": 0.05, "memory_size": 3, "scale_init_precond": False, "linesearch": None},
        "m3_unscaled",
    ),
]
