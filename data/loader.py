"""A fast loader over a split held whole as tensors on the target device.

Shuffling, batching, augmentation and normalization are tensor ops on the device (the
airbench recipe): no DataLoader, no workers, no per-sample Python. All randomness comes
from one seeded CPU ``torch.Generator`` whose state is saved for exact resume.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import Augment


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Per-image random crop of a zero-padded batch, by one gather (no loop over images)."""
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
    padded = F.pad(x, (padding,) * 4)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class TensorLoader:
    """Iterates ``(normalized float images, labels)`` batches of one split.

    Args:
        images: uint8 (N, C, H, W); moved to ``device`` once.
        labels: int64 (N,).
        mean: per-channel means on the 0..1 scale.
        std: per-channel standard deviations on the 0..1 scale.
        batch_size: images per batch.
        shuffle: a fresh seeded permutation every epoch.
        drop_last: skip the final incomplete batch (training).
        augment: random crop / flip applied per batch, or ``None``.
        transform: a further ``f(uint8 batch, generator) -> uint8 batch`` after crop/flip (e.g.
            :class:`landscape.data.corruptions.CorruptHalf`), drawing its randomness from the loader's generator.
        seed: seed of the loader's generator (permutations and augmentation).
        device: where the images live and batches are made.
        channels_last: hand batches out in channels-last memory format (faster convs on GPU).
        shard: ``(rank, world)``: every batch is drawn and augmented whole (the same on every rank,
            from the same generator), then this rank gets its ``1/world`` of the rows, so the shards
            of one step are the same images however many ranks there are.

    Raises:
        ValueError: a batch size below 1, above the number of images (with ``drop_last``), or that does not divide
            into ``world`` equal shards.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment | None = None,
        transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if drop_last and batch_size > len(labels):
            raise ValueError(f"batch size {batch_size} exceeds the {len(labels)} training images")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment if augment is not None and (augment.crop_padding or augment.hflip) else None
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)
        self.channels_last = channels_last
        rank, world = shard
        if not 0 <= rank < world or batch_size % world:
            raise ValueError(f"batch size {batch_size} does not divide into {world} equal shards (rank {rank})")
        self.shard = shard

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 images to the normalized float batch the model sees (channels-last if asked)."""
        x = (x.float() / 255 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.labels.device)
        else:
            order = torch.arange(n, device=self.labels.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment is not None:
                if self.augment.crop_padding:
                    x = random_crop(x, self.augment.crop_padding, self.generator)
                if self.augment.hflip:
                    x = random_hflip(x, self.generator)
            if self.transform is not None:
                x = self.transform(x, self.generator)
            y = self.labels[idx]
            if self.shard[1] > 1:  # the whole batch was drawn and augmented as on one process: this rank's rows
                rank, world = self.shard
                rows = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
                x, y = x[rows], y[rows]
            yield self.normalize(x), y

    def state_dict(self) -> dict:
        """The shuffling generator's state: a resumed run draws the same batches."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state :meth:`state_dict` returned."""
        self.generator.set_state(state["generator"])


__all__ = ["TensorLoader"]
