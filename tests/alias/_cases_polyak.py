"""polyak_sgd configurations for the generic tests (it reads the loss: ``value=``)."""

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("polyak_sgd", {}, "default", needs_value=True),
    BreadthCase(
        "polyak_sgd",
        {"lr": 0.5, "max_lr": 0.3, "f_min": 0.5, "eps": 0.1, "variant": "sps+"},
        "sps+",
        needs_value=True,
    ),
]
