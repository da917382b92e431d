"""Work splitting across processes started by ``torchrun`` (gloo on CPU, nccl on GPU)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Group:
    """This process's rank in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_group(device_type: str) -> tuple[Group, torch.device | None]:
    """Join the torchrun job if there is one; returns the group and, on GPU, this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group(), None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    device = None
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Group(dist.get_rank(), dist.get_world_size()), device


def join_group(device_type: str) -> Group:
    """This process's group: the torchrun job's (joined if not yet), or rank 0 of 1."""
    if dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return init_group(device_type)[0]


def close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
