"""Learning-rate schedules: functions of the step count (TorchOpt's argument order)."""

from torchopt_lite.schedule.exponential_decay import exponential_decay
from torchopt_lite.schedule.polynomial import linear_schedule, polynomial_schedule

__all__ = ["exponential_decay", "polynomial_schedule", "linear_schedule"]
