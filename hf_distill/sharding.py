"""The teacher across processes: sharded for inference (FSDP2) or replicated, and launches that asked for FSDP.

A frozen teacher needs no gradients and no optimizer state, only its weights for the forward pass. Replicated, each
process holds all of them. Sharded with `torch.distributed.fsdp.fully_shard`, each process holds 1/N of them, and
each layer's weights are all-gathered just for its forward and freed right after (`reshard_after_forward=True`, the
root module included): the cost is one layer's full weights at a time, plus that communication at every step.

`shard_teacher` takes a device mesh, not an accelerator, so it is tested on CPU processes over gloo. The trainer
calls it when `teacher_sharding` resolves to `"shard"`: under Accelerate's FSDP by default (`"auto"`), or on request
under DDP, where the student is replicated and only the teacher is split.

Accelerate turns FSDP on for GPU process groups only: `accelerate launch --use_fsdp` on CPU processes trains with
DDP (`--use_cpu true`) or as independent single-process runs, and says nothing. `warn_if_fsdp_is_off` says so.
"""

from __future__ import annotations

import copy
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)

TEACHER_SHARDING: tuple[str, ...] = ("auto", "shard", "replicate")


def layer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model (its transformer layers), each sharded on its own: the longest `ModuleList`
    whose children are all of one class. Empty for a model without one (it is then sharded as one unit)."""
    best: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            children = list(module)
            if children and all(type(child) is type(children[0]) for child in children):
                best = children
    return best


def process_mesh(device: torch.device | str) -> Any:
    """A one-dimensional device mesh over every process of the default process group."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("sharding the teacher needs a process group: launch with accelerate launch or torchrun")
    return init_device_mesh(torch.device(device).type, (dist.get_world_size(),))


def shard_teacher(teacher: nn.Module, mesh: Any, *, copy_teacher: bool = True) -> nn.Module:
    """A frozen teacher sharded for inference over `mesh` with FSDP2: each process keeps 1/N of its weights.

    Each repeated block (`layer_blocks`) and then the whole model are wrapped with `fully_shard(...,
    reshard_after_forward=True)`, so a forward pass gathers one block's weights at a time and frees them after it;
    the outputs are those of the unsharded teacher. The result is in eval mode with `requires_grad=False`.

    A process whose teacher is on the meta device (transformers' rank-0-only loading under FSDP) gets its shard of
    rank 0's weights; this is a collective call, made by every process of `mesh`.

    Args:
        teacher (`nn.Module`): The teacher, on the device of `mesh` or the CPU (or the meta device, but not on rank 0).
        mesh (`DeviceMesh`): The processes to shard over (`process_mesh(device)` for all of them).
        copy_teacher (`bool`, *optional*, defaults to `True`): Shard a deep copy and leave `teacher` as it is; its
            full weights are then freed only once nothing else refers to it. `False` shards `teacher` in place.

    Returns:
        `nn.Module`: The sharded teacher (an FSDP module of the teacher's class).
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import fully_shard

    model = copy.deepcopy(teacher) if copy_teacher else teacher
    device = torch.device(mesh.device_type, torch.cuda.current_device()) if mesh.device_type == "cuda" else "cpu"
    # Rank-0-only loading (`accelerate launch --use_fsdp`) leaves the other ranks' weights on the meta device: they
    # are sharded empty, allocated (their shard only), and filled from rank 0, so no process ever holds a whole copy
    # it did not load.
    empty = torch.tensor([float(any(p.is_meta for p in model.parameters()))], device=device)
    dist.all_reduce(empty)
    full_state = model.state_dict() if empty.item() and dist.get_rank() == 0 else {}
    if not any(p.is_meta for p in model.parameters()):
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    for block in layer_blocks(model):
        fully_shard(block, mesh=mesh, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    if empty.item():
        if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
            model.to_empty(device=device)
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, full_state, options=options)
        with torch.no_grad():
            for buffer in model.buffers():  # not sharded, and not all in the state dict (position ids)
                dist.broadcast(buffer.data, src=0)
    return model


def zero3_gathered(model: nn.Module) -> AbstractContextManager[Any]:
    """A context in which a teacher partitioned by DeepSpeed ZeRO-3 holds its whole weights (an empty context for any
    other teacher).

    Under ZeRO-3, `from_pretrained` builds models inside `deepspeed.zero.Init`, so a teacher loaded after the trainer
    started (a route checkpoint) has empty, partitioned parameters that only a DeepSpeed engine would gather; the
    forward pass then fails or reads nothing. Its parameters are gathered for the forward and partitioned again
    after it: each process holds the whole teacher for the length of one forward pass.
    """
    partitioned = [p for p in model.parameters() if hasattr(p, "ds_id")]
    if not partitioned:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)


def local_parameter_count(model: nn.Module) -> int:
    """The parameters this process holds: a sharded parameter's local shard, or the whole of a plain one."""
    from torch.distributed.tensor import DTensor

    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())


def resolve_teacher_sharding(setting: str, *, fsdp: bool, world_size: int, cotrain: bool = False) -> str:
    """`"shard"` or `"replicate"` for a `teacher_sharding` setting: `"auto"` shards under FSDP and replicates
    otherwise; a single process always replicates (there is nothing to split it across).

    Raises:
        ValueError: For an unknown setting, or `"shard"` with a co-trained teacher (it trains, so it is prepared like
            the student, not sharded for inference).
    """
    if setting not in TEACHER_SHARDING:
        raise ValueError(
            f"teacher_sharding must be one of {list(TEACHER_SHARDING)}, got {setting!r}; DeepSpeed ZeRO is chosen at "
            "launch (accelerate launch --use_deepspeed --zero_stage 3)"
        )
    if cotrain and setting == "shard":
        raise ValueError(
            "teacher_sharding='shard' shards a frozen teacher for inference, but cotrain_teacher=True trains it; "
            "drop teacher_sharding (a co-trained teacher is prepared like the student, FSDP included)"
        )
    if world_size <= 1 or cotrain:
        return "replicate"
    if setting == "auto":
        return "shard" if fsdp else "replicate"
    return setting


def materialize_from_rank0(model: nn.Module, device: torch.device | str) -> bool:
    """Give every process rank 0's weights when some process holds none (a collective: every rank calls it).

    Under `accelerate launch --use_fsdp`, transformers loads weights on rank 0 only (`FSDP_CPU_RAM_EFFICIENT_LOADING`,
    on by default) and leaves the other ranks' on the meta device, for FSDP to fill from rank 0 when it wraps the
    model. A teacher is never wrapped by Accelerate, so nothing fills it: its forward fails ("Cannot copy out of meta
    tensor"), as other distillation trainers' teachers do under FSDP. Here the empty ranks are allocated and every
    parameter and buffer is broadcast from rank 0. Returns whether anything was broadcast.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return False
    tensors = [*model.parameters(), *model.buffers()]
    empty = torch.tensor([float(any(t.is_meta for t in tensors))], device=torch.device(device))
    dist.all_reduce(empty)
    if not empty.item():
        return False
    if any(t.is_meta for t in tensors):
        model.to_empty(device=device)
        tensors = [*model.parameters(), *model.buffers()]
    else:
        model.to(device)
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)
    return True


def warn_if_fsdp_is_off(args: Any) -> bool:
    """Warn when the launch asked for FSDP (`accelerate launch --use_fsdp`) and the run is not sharded: on CPU
    processes, where Accelerate does not enable it. Models are then loaded whole in every process: transformers'
    rank-0-only loading (`FSDP_CPU_RAM_EFFICIENT_LOADING`) is turned off, since no FSDP wrapping would fill the other
    ranks' weights.

    Returns whether a warning was given.
    """
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    if not asked or torch.device(getattr(args, "device", "cpu")).type != "cpu":
        return False
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    if getattr(args, "world_size", 1) > 1:
        instead = (
            f"trains with DDP on {args.world_size} processes: every process holds the whole student, its "
            "optimizer state and the teacher (pass teacher_sharding='shard' to split the teacher)"
        )
    else:
        instead = "trains each process alone (world size 1), as independent runs into the same output directory"
    logger.warning(
        "accelerate launch --use_fsdp was given, but this run is NOT sharded: Accelerate enables FSDP on GPUs only, "
        "and this run is on %s. It %s.",
        getattr(args, "device", "cpu"),
        instead,
    )
    return True
