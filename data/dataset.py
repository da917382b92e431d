"""The in-memory image dataset every loader and trainer works on, and the registry of names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset held as tensors: uint8 images (N, C, H, W) and int64 labels.

    Keeping images as uint8 makes even CIFAR small enough to live on the GPU whole, so
    batching and augmentation never leave the device. ``mean``/``std`` are per-channel
    statistics of the training split on the 0..1 scale, used to normalize every batch.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(
                    f"{self.name}: {split} images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
                )
            if y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: {split} labels {tuple(y.shape)} do not match {x.shape[0]} images")
            # standard strides: 1-channel images built as array[:, None] carry channels-last strides, which sent
            # convolutions down another oneDNN path whose gradients depended on the batch size (1 vs N ranks)
            object.__setattr__(self, f"{split}_x", x.clone(memory_format=torch.contiguous_format))

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    @cached_property
    def _channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (sample) std on the 0..1 scale, in chunks: no float copy of the whole split."""
        total = torch.zeros(self.in_channels, dtype=torch.float64)
        squares = torch.zeros_like(total)
        for chunk in self.train_x.split(4096):
            c = chunk.double()
            total += c.sum(dim=(0, 2, 3))
            squares += (c * c).sum(dim=(0, 2, 3))
        n = self.train_x.numel() / self.in_channels
        mean = total / n
        var = (squares - n * mean * mean) / (n - 1)
        std = (var.clamp_min(0).sqrt() / 255).clamp_min(1e-3)
        return tuple((mean / 255).tolist()), tuple(std.tolist())

    @property
    def mean(self) -> tuple[float, ...]:
        return self._channel_stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self._channel_stats[1]

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """(images, labels) of ``"train"`` or ``"test"``."""
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train' or 'test'")
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)

    def spec(self) -> dict:
        """Plain-dict description stored in checkpoints (what analysis needs to rebuild inputs)."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "train_size": len(self.train_y),
            "test_size": len(self.test_y),
        }


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop after zero-padding by ``crop_padding`` pixels, random horizontal flip."""

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {self.crop_padding}")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    load: Callable[[Path | None], ImageDataset]
    needs_root: bool
    description: str
    augment: Augment


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, needs_root: bool, description: str, augment: Augment = Augment()):
    """Decorator adding a loader ``fn(root) -> ImageDataset`` to :data:`DATASETS`.

    ``augment`` is the dataset's customary training augmentation (the papers' recipes).
    """

    def wrap(fn: Callable[[Path | None], ImageDataset]):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetInfo(name, fn, needs_root, description, augment)
        return fn

    return wrap


def dataset_info(name: str) -> DatasetInfo:
    info = DATASETS.get(name)
    if info is None:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    return info


def load_dataset(name: str, root: str | Path | None = None) -> ImageDataset:
    """Load a registered dataset by name; on-disk ones read from ``root`` (never downloaded)."""
    info = dataset_info(name)
    folder = None if root is None else Path(root)
    if info.needs_root:
        if folder is None:
            raise ValueError(f"dataset {name!r} is read from disk: pass data_root= (the folder holding its files)")
        if not folder.is_dir():
            raise FileNotFoundError(f"data root {str(folder)!r} is not a directory")
    return info.load(folder)
