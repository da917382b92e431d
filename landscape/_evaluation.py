"""The evaluation data of our checkpoints' datasets, and BatchNorm statistics recomputed on data.

Every analysis evaluates the same fixed tensors at many weights, so the set is built
once (normalized as in training, optionally a seeded subset) and kept on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from landscape.data import load_dataset


@dataclass
class EvalSet:
    """Normalized images and labels of one split (or a fixed subset), already on the device."""

    x: Tensor
    y: Tensor
    batch_size: int = 1000

    def __len__(self) -> int:
        return len(self.y)

    def batches(self):
        for i in range(0, len(self.y), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]


def eval_sets(
    dataset_spec: dict,
    splits: list[str],
    *,
    samples: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> dict[str, EvalSet]:
    """The evaluation sets of a checkpoint's dataset, normalized with the statistics it was trained with.

    ``samples`` picks a fixed subset per split (the first ``samples`` of a permutation seeded
    with ``seed``), the same on every run and every rank.
    """
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    ds = load_dataset(dataset_spec["name"], data_root)
    out = {}
    for split in splits:
        x, y = ds.split(split)
        idx = subset(len(y), samples, seed)
        out[split] = EvalSet(normalize(x[idx], dataset_spec).to(device), y[idx].to(device), batch_size)
    return out


def subset(n: int, samples: int | None, seed: int) -> Tensor:
    """Indices of the fixed evaluation subset: the first ``samples`` of a seeded permutation, sorted (all if None)."""
    if samples is None or samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples].sort().values


def normalize(x: Tensor, dataset_spec: dict) -> Tensor:
    """uint8 images -> float, normalized with the statistics the checkpoint was trained with."""
    mean = torch.tensor(dataset_spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(dataset_spec["std"]).view(1, -1, 1, 1)
    return (x.float() / 255 - mean) / std


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, forward_pass: Callable[[], None]) -> None:
    """Replace BatchNorm running statistics by averages over the batches of ``forward_pass()`` (one pass over
    the data through ``model``), as mode-connectivity's and torch's ``update_bn`` do; the mode is restored."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    modes = [(module, module.training) for module in model.modules()]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    try:
        forward_pass()
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        for module, training in modes:
            module.training = training
