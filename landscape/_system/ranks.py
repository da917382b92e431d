"""Several processes started by ``torchrun`` (gloo on CPU, nccl on GPU): this process's ranks, their
reductions, and how a rank says why it stopped.

Training and the analyses use the engine users already run: ``torch.distributed`` launched by
``torchrun``. Without ``WORLD_SIZE`` (or with 1) everything here is the one-process identity.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


@dataclass
class Ranks:
    """This process's rank in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj``, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, decide: Callable[[], T]) -> T:
        """``decide()`` on rank 0 (file checks, resume decisions), its result on every rank; a user error there
        (ValueError, FileNotFoundError, OSError) is raised on every rank, so none is left waiting."""
        verdict: tuple = ("ok", None)
        if self.is_main:
            try:
                verdict = ("ok", decide())
            except (ValueError, FileNotFoundError, OSError) as e:
                verdict = ("error", str(e))
        status, value = self.broadcast(verdict) if self.world > 1 else verdict
        if status == "error":
            raise ValueError(value)
        return value

    def sum_(self, tensors: list[Tensor]) -> None:
        """Replace each tensor by its sum over the ranks, in place (one flat reduction)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        torch._foreach_copy_(tensors, [c.view_as(t) for c, t in zip(flat.split([t.numel() for t in tensors]), tensors)])

    def mean_(self, tensors: list[Tensor]) -> None:
        """Replace each tensor by its mean over the ranks, in place."""
        if self.world > 1 and tensors:
            self.sum_(tensors)
            torch._foreach_mul_(tensors, 1.0 / self.world)


def current_group() -> Ranks:
    return Ranks(dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else Ranks()


def init_group(device_type: str) -> tuple[Ranks, torch.device | None]:
    """Join the torchrun job if there is one; returns the group and, on GPU, this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    device = None
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return current_group(), device


def join_group(device_type: str) -> Ranks:
    """This process's group: the torchrun job's (joined if not yet), or rank 0 of 1."""
    return current_group() if dist.is_initialized() else init_group(device_type)[0]


def close_group(wait: bool = True) -> None:
    """Leave the torchrun job's process group; ``wait``: after every rank got here (a rank that leaves early can
    abort the others' gloo threads at exit). Errors leave without waiting: the others may be in a collective."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            with contextlib.suppress(RuntimeError):
                dist.barrier()
        dist.destroy_process_group()


def stopped_message(command: str) -> str:
    """The line of a rank of a ``landscape COMMAND`` job that torchrun stops (the command line's words)."""
    return (
        f"landscape {command}: rank {os.environ.get('RANK', '?')} stopped: another rank failed or the job was "
        "stopped (its message is above); finished epochs and points are saved: rerun with --resume"
    )


SAID = "LANDSCAPE_SAID"  # a file (set by landscape.apps.cli.torchrun) each rank appends to once it has printed its line
_said = False


def say(line: str) -> None:
    """Print this rank's one line about why it stopped and record it for the launcher, which then adds nothing."""
    global _said
    _said = True
    print(line, file=sys.stderr, flush=True)
    if os.environ.get(SAID):
        with open(os.environ[SAID], "a") as f:
            f.write(f"{os.environ.get('RANK', '?')}\n")


def stop_when_terminated(command: str) -> None:
    """Under torchrun, a rank that torchrun terminates after another rank's failure says so in one line."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return

    def handler(signum: int, frame: object) -> None:
        if not _said:  # torchrun's SIGTERM may come after this rank has said why it stopped
            say(stopped_message(command))
        os._exit(1)

    signal.signal(signal.SIGTERM, handler)


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank is gone (a closed or reset connection)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return False
    text = str(error)
    return isinstance(error, getattr(dist, "DistError", ())) or (
        isinstance(error, RuntimeError)
        and any(s in text for s in ("gloo", "NCCL", "Connection reset", "Connection closed"))
    )
