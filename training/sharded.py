"""The sharded path: torchrec ``DistributedModelParallel`` (DMP) for large embedding tables.

Used when ``ranker.sharded: true`` and ``ranker.device: cuda``. Launch one process per GPU
with ``torchrun --nproc-per-node=N -m recpipe.cli ranker train ...``: torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT``, and :func:`shard` joins
the process group (NCCL on CUDA, gloo on CPU). Build the model with
``embedding_device=torch.device("meta")`` so the tables are only allocated, sharded, on the
GPUs; attach the in-backward sparse optimizer before sharding (as
:func:`training.train.prepare` does) so DMP fuses it into FBGEMM's kernels. Each rank must
read a different part of the training data.

On one CPU process (gloo, world size 1) the planner picks data-parallel tables; that is only
useful to test this code path.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def _device() -> torch.device:
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def shard(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Wrap ``model`` in ``DistributedModelParallel``, joining the process group if needed.

    Args:
        model: a :class:`~algorithms.ranker.model.RankerModel`, tables ideally on ``meta``.
        device: the rank's device; default its CUDA device, else CPU.

    Returns:
        The DMP module (call it like the model).
    """
    from torchrec.distributed import DistributedModelParallel

    device = device or _device()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    log.info("sharding the ranker over %d ranks on %s", dist.get_world_size(), device)
    return DistributedModelParallel(module=model, device=device)


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A plain (unsharded, CPU) state dict of a DMP or plain module, keys as the model's.

    Sharded tables are gathered to rank 0: a collective, so call it on every rank; only rank
    0's dict is complete (export there).
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    out: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        name = key.removeprefix("module.")
        if hasattr(value, "full_tensor"):  # DTensor
            value = value.full_tensor()
        elif hasattr(value, "local_shards"):  # ShardedTensor
            full = torch.empty(value.size(), dtype=value.dtype) if rank == 0 else None
            value.gather(dst=0, out=full)
            if full is None:
                continue
            value = full
        out[name] = value.detach().cpu().clone()
    return out
