"""BatchNorm over the whole global batch of a ``torchrun`` training job."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

# the differentiable all-reduce SyncBatchNorm needs; its suggested successor has no autograd support yet
warnings.filterwarnings(
    "ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated", category=FutureWarning
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
        """BatchNorm with the global batch's statistics in training mode on several ranks; plain BatchNorm otherwise."""
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


__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]
