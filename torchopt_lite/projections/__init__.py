"""Euclidean projections of trees of tensors onto convex sets (Optax's ``optax.projections``)."""

from torchopt_lite.projections._projections import (
    projection_box,
    projection_halfspace,
    projection_hypercube,
    projection_hyperplane,
    projection_l2_ball,
    projection_l2_sphere,
    projection_linf_ball,
    projection_non_negative,
    projection_vector,
)
from torchopt_lite.projections._simplex import (
    projection_l1_ball,
    projection_l1_sphere,
    projection_simplex,
)

__all__ = [
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
]
