"""Gradient transformations: the math of every optimizer, each written once."""

from torchopt_lite.base import EmptyState, identity
from torchopt_lite.transform import utils
from torchopt_lite.transform.add_decayed_weights import (
    MaskedNode,
    MaskedState,
    add_decayed_weights,
    masked,
)
from torchopt_lite.transform.nan_to_num import nan_to_num
from torchopt_lite.transform.scale import ScaleByScheduleState, scale, scale_by_schedule
from torchopt_lite.transform.scale_by_adadelta import ScaleByAdadeltaState, scale_by_adadelta
from torchopt_lite.transform.scale_by_adam import (
    ScaleByAdamState,
    scale_by_accelerated_adam,
    scale_by_adam,
)
from torchopt_lite.transform.scale_by_adamax import ScaleByAdamaxState, scale_by_adamax
from torchopt_lite.transform.scale_by_radam import ScaleByRAdamState, scale_by_radam
from torchopt_lite.transform.scale_by_rms import (
    ScaleByRmsState,
    ScaleByRStdDevState,
    scale_by_rms,
    scale_by_stddev,
)
from torchopt_lite.transform.scale_by_rss import ScaleByRssState, scale_by_rss
from torchopt_lite.transform.trace import TraceState, trace

__all__ = [
    "scale",
    "scale_by_schedule",
    "scale_by_adam",
    "scale_by_accelerated_adam",
    "scale_by_adamax",
    "scale_by_adadelta",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_stddev",
    "scale_by_rss",
    "trace",
    "add_decayed_weights",
    "masked",
    "nan_to_num",
    "identity",
    "utils",
    "EmptyState",
    "ScaleByScheduleState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAdadeltaState",
    "ScaleByRAdamState",
    "ScaleByRmsState",
    "ScaleByRStdDevState",
    "ScaleByRssState",
    "TraceState",
    "MaskedState",
    "MaskedNode",
]
