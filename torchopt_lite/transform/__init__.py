"""Gradient transformations: the math of every optimizer, each written once."""

from torchopt_lite.base import EmptyState, identity
from torchopt_lite.transform import utils
from torchopt_lite.transform.adaptive_grad_clip import adaptive_grad_clip
from torchopt_lite.transform.add_decayed_weights import (
    MaskedNode,
    MaskedState,
    add_decayed_weights,
    masked,
)
from torchopt_lite.transform.add_noise import AddNoiseState, add_noise
from torchopt_lite.transform.apply_every import ApplyEveryState, apply_every
from torchopt_lite.transform.apply_if_finite import ApplyIfFiniteState, apply_if_finite
from torchopt_lite.transform.centralize import centralize
from torchopt_lite.transform.clipping import clip, clip_by_block_rms, clip_by_global_norm
from torchopt_lite.transform.conditionally import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from torchopt_lite.transform.ema import EmaState, ema
from torchopt_lite.transform.freeze import freeze, selective_transform, set_to_zero
from torchopt_lite.transform.hessian_diagonal import (
    HutchinsonState,
    gauss_newton_bartlett_estimator_diag_hessian,
    hutchinson_estimator_diag_hessian,
)
from torchopt_lite.transform.inject_hyperparams import InjectHyperparamsState, inject_hyperparams
from torchopt_lite.transform.keep_params_nonnegative import keep_params_nonnegative
from torchopt_lite.transform.lookahead import LookaheadState, lookahead
from torchopt_lite.transform.multi_steps import (
    MultiSteps,
    MultiStepsState,
    skip_large_updates,
    skip_not_finite,
)
from torchopt_lite.transform.named_chain import named_chain
from torchopt_lite.transform.nan_to_num import nan_to_num
from torchopt_lite.transform.normalize import normalize
from torchopt_lite.transform.normalize_by_update_norm import normalize_by_update_norm
from torchopt_lite.transform.partition import PartitionState, multi_transform, partition
from torchopt_lite.transform.per_example_clip import (
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from torchopt_lite.transform.reduce_on_plateau import ReduceLROnPlateauState, reduce_on_plateau
from torchopt_lite.transform.scale import ScaleByScheduleState, scale, scale_by_schedule
from torchopt_lite.transform.scale_by_adadelta import ScaleByAdadeltaState, scale_by_adadelta
from torchopt_lite.transform.scale_by_adam import (
    ScaleByAdamState,
    scale_by_accelerated_adam,
    scale_by_adam,
)
from torchopt_lite.transform.scale_by_adamax import ScaleByAdamaxState, scale_by_adamax
from torchopt_lite.transform.scale_by_adan import ScaleByAdanState, scale_by_adan
from torchopt_lite.transform.scale_by_amsgrad import ScaleByAMSGradState, scale_by_amsgrad
from torchopt_lite.transform.scale_by_asgd import ScaleByAsgdState, scale_by_asgd
from torchopt_lite.transform.scale_by_belief import ScaleByBeliefState, scale_by_belief
from torchopt_lite.transform.scale_by_factored_rms import (
    ScaleByFactoredRmsState,
    scale_by_factored_rms,
)
from torchopt_lite.transform.scale_by_lbfgs import ScaleByLBFGSState, scale_by_lbfgs
from torchopt_lite.transform.scale_by_lion import ScaleByLionState, scale_by_lion
from torchopt_lite.transform.scale_by_muon import ScaleByMuonState, scale_by_muon
from torchopt_lite.transform.scale_by_nadam import ScaleByNAdamState, scale_by_nadam
from torchopt_lite.transform.scale_by_nesterov_adam import scale_by_nesterov_adam
from torchopt_lite.transform.scale_by_novograd import ScaleByNovogradState, scale_by_novograd
from torchopt_lite.transform.scale_by_optimistic_gradient import (
    ScaleByOptimisticGradientState,
    scale_by_optimistic_gradient,
)
from torchopt_lite.transform.scale_by_polyak import scale_by_polyak
from torchopt_lite.transform.scale_by_prodigy import ScaleByProdigyState, scale_by_prodigy
from torchopt_lite.transform.scale_by_radam import ScaleByRAdamState, scale_by_radam
from torchopt_lite.transform.scale_by_relative_step import (
    ScaleByRelativeStepState,
    scale_by_relative_step,
)
from torchopt_lite.transform.scale_by_rms import (
    ScaleByRmsState,
    ScaleByRStdDevState,
    scale_by_rms,
    scale_by_stddev,
)
from torchopt_lite.transform.scale_by_rprop import ScaleByRpropState, scale_by_rprop
from torchopt_lite.transform.scale_by_rss import ScaleByRssState, scale_by_rss
from torchopt_lite.transform.scale_by_schedule_free import (
    ScheduleFreeState,
    scale_by_schedule_free,
    schedule_free_eval_params,
)
from torchopt_lite.transform.scale_by_sign import ScaleBySignumState, scale_by_sign, scale_by_signum
from torchopt_lite.transform.scale_by_sm3 import ScaleBySM3State, scale_by_sm3
from torchopt_lite.transform.scale_by_sophia import ScaleBySophiaState, scale_by_sophia
from torchopt_lite.transform.scale_by_trust_ratio import scale_by_trust_ratio
from torchopt_lite.transform.scale_by_yogi import ScaleByYogiState, scale_by_yogi
from torchopt_lite.transform.scale_by_zoom_linesearch import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_zoom_linesearch,
)
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
    "adaptive_grad_clip",
    "AddNoiseState",
    "add_noise",
    "ApplyEveryState",
    "apply_every",
    "ApplyIfFiniteState",
    "apply_if_finite",
    "centralize",
    "clip",
    "clip_by_global_norm",
    "clip_by_block_rms",
    "ConditionallyTransformState",
    "ConditionallyMaskState",
    "conditionally_transform",
    "conditionally_mask",
    "EmaState",
    "ema",
    "set_to_zero",
    "freeze",
    "selective_transform",
    "InjectHyperparamsState",
    "inject_hyperparams",
    "keep_params_nonnegative",
    "LookaheadState",
    "lookahead",
    "MultiStepsState",
    "MultiSteps",
    "skip_not_finite",
    "skip_large_updates",
    "named_chain",
    "normalize_by_update_norm",
    "PartitionState",
    "partition",
    "multi_transform",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "ReduceLROnPlateauState",
    "reduce_on_plateau",
    "ScaleByAdanState",
    "scale_by_adan",
    "ScaleByAMSGradState",
    "scale_by_amsgrad",
    "ScaleByAsgdState",
    "scale_by_asgd",
    "ScaleByBeliefState",
    "scale_by_belief",
    "ScaleByFactoredRmsState",
    "scale_by_factored_rms",
    "ScaleByLionState",
    "scale_by_lion",
    "ScaleByMuonState",
    "scale_by_muon",
    "ScaleByNAdamState",
    "scale_by_nadam",
    "scale_by_nesterov_adam",
    "ScaleByNovogradState",
    "scale_by_novograd",
    "ScaleByOptimisticGradientState",
    "scale_by_optimistic_gradient",
    "scale_by_polyak",
    "ScaleByProdigyState",
    "scale_by_prodigy",
    "ScaleByRelativeStepState",
    "scale_by_relative_step",
    "ScaleByRpropState",
    "scale_by_rprop",
    "ScheduleFreeState",
    "scale_by_schedule_free",
    "schedule_free_eval_params",
    "ScaleBySignumState",
    "scale_by_sign",
    "scale_by_signum",
    "ScaleBySM3State",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "ScaleByYogiState",
    "scale_by_yogi",
    "ScaleByLBFGSState",
    "scale_by_lbfgs",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "scale_by_zoom_linesearch",
    "ScaleBySophiaState",
    "scale_by_sophia",
    "HutchinsonState",
    "hutchinson_estimator_diag_hessian",
    "gauss_newton_bartlett_estimator_diag_hessian",
    "normalize",
]
