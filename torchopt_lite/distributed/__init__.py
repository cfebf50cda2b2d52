"""Scale-out on ``torch.distributed``: RPC (TorchOpt's API) and collectives (torchrun, all-reduce).

TorchOpt 0.7.3's ``torchopt.distributed`` API. ``torch.distributed.rpc`` is exposed as
``rpc`` (``todist.rpc.RRef``, ...), as in TorchOpt.
"""

import torch.distributed.rpc as rpc

from torchopt_lite.distributed import api, autograd, checkpoint, collective, sharded, world
from torchopt_lite.distributed.api import (
    UNSET_RPC_TIMEOUT,
    TensorDimensionPartitioner,
    batch_partitioner,
    dim_partitioner,
    exclusive_batch_partitioner,
    mean_reducer,
    parallelize,
    parallelize_async,
    parallelize_sync,
    remote_async_call,
    remote_sync_call,
    sum_reducer,
)
from torchopt_lite.distributed.checkpoint import load_checkpoint, save_checkpoint
from torchopt_lite.distributed.collective import (
    MetaGradientAllReduce,
    collective_rank,
    collective_world_size,
    init_process_group,
    rank_zero_print,
    task_generator,
    task_shard,
)
from torchopt_lite.distributed.sharded import full_parameters, shard_meta_model
from torchopt_lite.distributed.world import (
    WorldInfo,
    auto_init_rpc,
    barrier,
    default_worker_name_format,
    get_local_rank,
    get_local_world_size,
    get_rank,
    get_worker_id,
    get_world_info,
    get_world_rank,
    get_world_size,
    is_available,
    not_on_rank,
    on_rank,
    rank_all,
    rank_non_zero_only,
    rank_zero_only,
)

__all__ = [
    "is_available",
    # world
    "WorldInfo",
    "default_worker_name_format",
    "get_world_info",
    "get_world_rank",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "get_local_world_size",
    "get_worker_id",
    "barrier",
    "auto_init_rpc",
    "on_rank",
    "not_on_rank",
    "rank_all",
    "rank_zero_only",
    "rank_non_zero_only",
    # api
    "TensorDimensionPartitioner",
    "dim_partitioner",
    "batch_partitioner",
    "exclusive_batch_partitioner",
    "mean_reducer",
    "sum_reducer",
    "remote_async_call",
    "remote_sync_call",
    "parallelize",
    "parallelize_async",
    "parallelize_sync",
    "UNSET_RPC_TIMEOUT",
    # collectives
    "init_process_group",
    "collective_rank",
    "collective_world_size",
    "task_shard",
    "task_generator",
    "MetaGradientAllReduce",
    "shard_meta_model",
    "full_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "rank_zero_print",
]
