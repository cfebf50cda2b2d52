"""TorchOpt 0.7.3's public surface (REFERENCE.md §1.0-1.5, 1.16, 1.17) exists at the same paths."""

from __future__ import annotations

import importlib
import importlib.util
import inspect

import optree
import pytest

import torchopt_lite

TOP_LEVEL = [
    "SGD",
    "AdaDelta",
    "AdaGrad",
    "AdaMax",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "FuncOptimizer",
    "MetaAdaDelta",
    "MetaAdaGrad",
    "MetaAdaMax",
    "MetaAdadelta",
    "MetaAdagrad",
    "MetaAdam",
    "MetaAdamW",
    "MetaAdamax",
    "MetaOptimizer",
    "MetaRAdam",
    "MetaRMSProp",
    "MetaRMSprop",
    "MetaSGD",
    "Optimizer",
    "RAdam",
    "RMSProp",
    "RMSprop",
    "accelerated_op_available",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "apply_updates",
    "chain",
    "clip_grad_norm",
    "extract_state_dict",
    "module_clone",
    "module_detach_",
    "nan_to_num",
    "radam",
    "recover_state_dict",
    "register_hook",
    "rmsprop",
    "sgd",
    "stop_gradient",
]

SUBMODULES = [
    "accelerated_op",
    "alias",
    "base",
    "clip",
    "combine",
    "diff",
    "distributed",
    "hook",
    "linalg",
    "linear_solve",
    "nn",
    "optim",
    "pytree",
    "schedule",
    "typing",
    "visual",
    "transform",
    "update",
    "utils",
]

MODULE_NAMES = {
    "base": """GradientTransformation TransformInitFn TransformUpdateFn
        ChainedGradientTransformation IdentityGradientTransformation identity EmptyState
        UninitializedState""",
    "alias": "adam adamw sgd rmsprop adagrad adadelta adamax radam",
    "alias.utils": "flip_sign_and_add_weight_decay scale_by_neg_lr",
    "transform": """scale scale_by_schedule scale_by_adam scale_by_accelerated_adam scale_by_adamax
        scale_by_adadelta scale_by_radam scale_by_rms scale_by_stddev scale_by_rss trace
        add_decayed_weights masked nan_to_num ScaleByAdamState ScaleByAdamaxState
        ScaleByAdadeltaState ScaleByRAdamState ScaleByRmsState ScaleByRStdDevState ScaleByRssState
        ScaleByScheduleState TraceState MaskedState MaskedNode""",
    "transform.utils": "tree_map_flat tree_map_flat_ inc_count update_moment",
    "schedule": "exponential_decay polynomial_schedule linear_schedule",
    "combine": "chain chain_flat",
    "clip": "clip_grad_norm",
    "hook": "register_hook zero_nan_hook nan_to_num_hook",
    "update": "apply_updates",
    "accelerated_op": "is_available",
    "pytree": """tree_flatten_as_tuple tree_pos tree_neg tree_add tree_add_scalar_mul tree_sub
        tree_sub_scalar_mul tree_mul tree_matmul tree_scalar_mul tree_truediv tree_vdot_real
        tree_wait""",
    "typing": """GradientTransformation ChainedGradientTransformation EmptyState UninitializedState
        Params Updates OptState Scalar Numeric Schedule ScalarOrSchedule PyTree Tensor
        OptionalTensor ListOfTensors TupleOfTensors SequenceOfTensors TensorOrTensors TensorTree
        ListOfOptionalTensors TupleOfOptionalTensors SequenceOfOptionalTensors
        OptionalTensorOrOptionalTensors OptionalTensorTree TensorContainer ModuleTensorContainers
        Future LinearSolver Device Size Distribution SampleFunc Samplable""",
}


def test_top_level_all_contains_torchopt_names() -> None:
    missing = sorted(set(TOP_LEVEL) - set(torchopt_lite.__all__))
    assert not missing, f"missing from torchopt_lite.__all__: {missing}"
    for name in TOP_LEVEL:
        assert getattr(torchopt_lite, name) is not None
    assert torchopt_lite.__version__


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodule_is_an_attribute(name: str) -> None:
    module = getattr(torchopt_lite, name)
    assert module is importlib.import_module(f"torchopt_lite.{name}")


@pytest.mark.parametrize("module", sorted(MODULE_NAMES))
def test_module_names_exist(module: str) -> None:
    mod = importlib.import_module(f"torchopt_lite.{module}")
    missing = [n for n in MODULE_NAMES[module].split() if not hasattr(mod, n)]
    assert not missing, f"torchopt_lite.{module} lacks {missing}"


def test_pytree_reexports_all_of_optree() -> None:
    from torchopt_lite import pytree

    missing = sorted(set(optree.__all__) - set(pytree.__all__))
    assert not missing


def test_double_spellings_are_the_same_objects() -> None:
    for a, b in [("RMSProp", "RMSprop"), ("AdaGrad", "Adagrad"), ("AdaDelta", "Adadelta"),
                 ("AdaMax", "Adamax"), ("MetaRMSProp", "MetaRMSprop"),
                 ("MetaAdaGrad", "MetaAdagrad"), ("MetaAdaDelta", "MetaAdadelta"),
                 ("MetaAdaMax", "MetaAdamax")]:  # fmt: skip
        assert getattr(torchopt_lite, a) is getattr(torchopt_lite, b)


HAS_TORCHOPT = importlib.util.find_spec("torchopt") is not None


@pytest.mark.skipif(not HAS_TORCHOPT, reason="the TorchOpt 0.7.3 anchor is not installed")
@pytest.mark.parametrize(
    "path",
    [f"alias.{n}" for n in MODULE_NAMES["alias"].split()]
    + [f"transform.{n}" for n in ("scale_by_adam", "scale_by_rms", "trace", "add_decayed_weights")]
    + [f"schedule.{n}" for n in MODULE_NAMES["schedule"].split()]
    + ["clip.clip_grad_norm", "update.apply_updates"],
)
def test_signatures_equal_torchopt(path: str) -> None:
    """Parameter names, kinds, order and defaults equal the installed TorchOpt's."""
    module, name = path.rsplit(".", 1)
    ours = inspect.signature(getattr(importlib.import_module(f"torchopt_lite.{module}"), name))
    theirs = inspect.signature(getattr(importlib.import_module(f"torchopt.{module}"), name))

    def shape(sig: inspect.Signature) -> list[tuple]:
        return [(p.name, p.kind, p.default) for p in sig.parameters.values()]

    assert shape(ours) == shape(theirs)


# TorchOpt 0.7.3 module paths that hold names in one of our modules (checked against the installed
# TorchOpt below when it is present).
_OPTIMIZER_FILES = {  # TorchOpt's file per optimizer -> the class it defines
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "AdaMax",
    "adadelta": "AdaDelta",
    "adagrad": "AdaGrad",
    "radam": "RAdam",
    "rmsprop": "RMSProp",
}
MODULE_PATHS = {
    **{f"optim.{file}": name for file, name in _OPTIMIZER_FILES.items()},
    **{f"optim.meta.{file}": f"Meta{name}" for file, name in _OPTIMIZER_FILES.items()},
    "optim.func.base": "FuncOptimizer",
    "transform.scale_by_schedule": "scale_by_schedule",
    "transform.scale_by_stddev": "scale_by_stddev",
    "accelerated_op.adam_op": "AdamOp",
    "diff": "ImplicitMetaGradientModule ZeroOrderGradientModule",
    "diff.implicit.nn.module": """ImplicitMetaGradientModule enable_implicit_gradients
        make_optimality_from_objective""",
    "pytree": "tree_as_rref tree_to_here",
}


@pytest.mark.parametrize("path", sorted(MODULE_PATHS))
def test_torchopt_module_paths_import_the_same_objects(path: str) -> None:
    module = importlib.import_module(f"torchopt_lite.{path}")
    for name in MODULE_PATHS[path].split():
        obj = getattr(module, name)
        assert obj is getattr(torchopt_lite, name, obj)  # the one object, not a copy


@pytest.mark.skipif(not HAS_TORCHOPT, reason="the TorchOpt 0.7.3 anchor is not installed")
def test_every_torchopt_module_path_imports() -> None:
    import pkgutil

    import torchopt

    missing = []
    for info in pkgutil.walk_packages(torchopt.__path__, "torchopt."):
        if "._C" in info.name or "_src" in info.name:  # the C++ extension and its fallback
            continue
        try:
            importlib.import_module(info.name.replace("torchopt", "torchopt_lite", 1))
        except ImportError:
            missing.append(info.name)
    assert not missing
