"""Several processes started by ``torchrun`` (gloo on CPU, nccl on GPU): the group, its reductions, and
BatchNorm over the whole global batch.

Training and the analyses use the engine users already run: ``torch.distributed`` launched by
``torchrun``. Without ``WORLD_SIZE`` (or with 1) everything here is the one-process identity.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

T = TypeVar("T")
# the differentiable all-reduce SyncBatchNorm needs; its suggested successor has no autograd support yet
warnings.filterwarnings(
    "ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated", category=FutureWarning
)


@dataclass
class Group:
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


def current_group() -> Group:
    return Group(dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else Group()


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
    return current_group(), device


def join_group(device_type: str) -> Group:
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


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch over all ranks.

    On one process (or in eval mode) it is exactly ``nn.BatchNorm*d``. Across ranks the mean
    and the variance are reduced with a differentiable all-reduce (two passes: the mean, then
    the squared deviations), so gradients flow through them as in one process holding the
    whole batch; unlike ``torch.nn.SyncBatchNorm`` it runs on CPU (gloo) as well as on GPU.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype, device=input.device)
        first = dist_fn.all_reduce(torch.cat([input.sum(dims), count]))
        n = first[-1]
        mean = first[:-1] / n
        shape = (1, -1) + (1,) * (input.dim() - 2)
        centred = input - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            assert self.num_batches_tracked is not None and self.running_mean is not None
            assert self.running_var is not None  # tracked statistics exist
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (n / (n - 1)), alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``module`` as a :class:`SyncBatchNorm` with the same parameters and statistics."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        ref = next(iter(module.state_dict().values()), None)
        if ref is not None:
            sync.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        sync.load_state_dict(module.state_dict())
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


def batchnorm_buffers(model: nn.Module) -> list[Tensor]:
    """The floating running statistics of every BatchNorm layer."""
    return [
        b
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
        for b in (m.running_mean, m.running_var)
        if b is not None
    ]
