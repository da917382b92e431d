"""The embedded default dataset: scikit-learn's handwritten digits (ships with the package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset, register_dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def _digits_uint8() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 -> 0..255
    return train_test_split(
        images, bunch.target.astype(np.int64), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=bunch.target
    )


@register_dataset("digits", needs_root=False, description="sklearn digits, 1x8x8 grayscale, 1437 train / 360 test")
def load_digits8(root: Path | None = None) -> ImageDataset:
    x_tr, x_te, y_tr, y_te = _digits_uint8()
    return ImageDataset(
        "digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te), 10
    )


def _to_rgb32(x: np.ndarray) -> torch.Tensor:
    up = F.interpolate(torch.from_numpy(x).float(), size=(32, 32), mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


@register_dataset(
    "digits32",
    needs_root=False,
    description="sklearn digits upsampled to 3x32x32 RGB (for image models and corruptions)",
)
def load_digits32(root: Path | None = None) -> ImageDataset:
    x_tr, x_te, y_tr, y_te = _digits_uint8()
    return ImageDataset(
        "digits32", _to_rgb32(x_tr), torch.from_numpy(y_tr), _to_rgb32(x_te), torch.from_numpy(y_te), 10
    )


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
