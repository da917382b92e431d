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

    Keeping images as uint8 makes even CIFAR small enough to live on the GPU whole, so batching and augmentation never
    leave the device. :attr:`mean` and :attr:`std` are per-channel statistics of the training split on the 0..1 scale,
    used to normalize every batch.

    Attributes:
        name: the dataset's name.
        train_x: training images, uint8 (N, C, H, W).
        train_y: training labels, int64 (N,).
        test_x: test images.
        test_y: test labels.
        num_classes: the number of classes (labels are ``0..num_classes-1``).
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
        """Channels per image (3 for RGB)."""
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        """Height (= width) of the images in pixels."""
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
        """Per-channel mean of the training images in [0, 1] (normalization)."""
        return self._channel_stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training images in [0, 1]."""
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
    """Training augmentation: random crop after zero-padding, random horizontal flip.

    Attributes:
        crop_padding: pixels of zero-padding before a random crop of the original size (0: no crop).
        hflip: flip each image horizontally with probability 1/2.
    """

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {self.crop_padding}")


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset.

    Attributes:
        name: its name (``load_dataset(name)``).
        load: ``load(root)`` returns the :class:`ImageDataset` (``root``: the folder of its files, or ``None``).
        needs_root: whether it is read from disk (``data_root=`` required) rather than shipped with the package.
        description: one line for ``--help`` and the README.
        augment: its customary training augmentation.
    """

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
    """The registration of dataset ``name``.

    Raises:
        ValueError: an unknown name (the known ones are listed).
    """
    info = DATASETS.get(name)
    if info is None:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    return info


def load_dataset(name: str, root: str | Path | None = None) -> ImageDataset:
    """Load a registered dataset by name.

    Args:
        name: one of :data:`DATASETS` (``digits``, the embedded default; ``cifar10``, ``mnist``, ...).
        root: the folder holding an on-disk dataset's files (never downloaded); ignored for embedded ones.

    Returns:
        The :class:`ImageDataset`.

    Raises:
        ValueError: an unknown name, a missing ``root`` for an on-disk dataset, or files that are not the dataset's.
    """
    info = dataset_info(name)
    folder = None if root is None else Path(root)
    if info.needs_root:
        if folder is None:
            raise ValueError(f"dataset {name!r} is read from disk: pass data_root= (the folder holding its files)")
        if not folder.is_dir():
            raise FileNotFoundError(f"data root {str(folder)!r} is not a directory")
    return info.load(folder)


__all__ = ["DATASETS", "Augment", "DatasetInfo", "ImageDataset", "dataset_info", "load_dataset"]
