"""Learning-rate schedules: functions of the step count (TorchOpt's argument order)."""

from torchopt_lite.schedule.cosine import (
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
)
from torchopt_lite.schedule.exponential_decay import exponential_decay
from torchopt_lite.schedule.join import join_schedules, sgdr, sgdr_schedule
from torchopt_lite.schedule.piecewise import (
    constant_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
)
from torchopt_lite.schedule.polynomial import linear_schedule, polynomial_schedule
from torchopt_lite.schedule.warmup import (
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)

__all__ = [
    # decays
    "exponential_decay",
    "polynomial_schedule",
    "linear_schedule",
    "cosine_decay_schedule",
    # piecewise
    "constant_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    # one cycle
    "linear_onecycle_schedule",
    "cosine_onecycle_schedule",
    # warmup
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    # joined
    "join_schedules",
    "sgdr_schedule",
    "sgdr",
]
