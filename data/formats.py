"""Readers for the standard on-disk formats, in the folder layouts torchvision uses.

Nothing here downloads: a user's existing ``--data-root`` is read with numpy/scipy only
(torchvision is not a dependency). A missing file gives one error naming what was expected.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from .dataset import Augment, ImageDataset, register_dataset

CIFAR_AUGMENT = Augment(crop_padding=4, hflip=True)


def _find(root: Path, dataset: str, names: list[str], subdirs: list[str]) -> Path:
    """First existing ``root/<subdir>/<name>``; else a FileNotFoundError listing the expected paths."""
    tried = [root / sub / name for sub in subdirs for name in names]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{dataset}: expected {tried[0]} under data_root= (also looked for {len(tried) - 1} other spellings)"
    )


# --- MNIST family: idx files ------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated idx file ({data.size} of {int(np.prod(shape))} values)")
    return data.reshape(shape)


def _idx_dataset(name: str, folder: str, root: Path) -> ImageDataset:
    def part(stem: str) -> np.ndarray:
        return read_idx(_find(root, name, [stem, stem + ".gz"], [f"{folder}/raw", folder, "."]))

    arrays = [
        part(s)
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(a.copy()) for a in arrays)
    return ImageDataset(name, x_tr[:, None], y_tr.long(), x_te[:, None], y_te.long(), 10)


@register_dataset("mnist", needs_root=True, description="MNIST idx files in ROOT/MNIST/raw")
def load_mnist(root: Path) -> ImageDataset:
    return _idx_dataset("mnist", "MNIST", root)


@register_dataset("fashion_mnist", needs_root=True, description="Fashion-MNIST idx files in ROOT/FashionMNIST/raw")
def load_fashion_mnist(root: Path) -> ImageDataset:
    return _idx_dataset("fashion_mnist", "FashionMNIST", root)


@register_dataset("kmnist", needs_root=True, description="Kuzushiji-MNIST idx files in ROOT/KMNIST/raw")
def load_kmnist(root: Path) -> ImageDataset:
    return _idx_dataset("kmnist", "KMNIST", root)


# --- CIFAR: python pickles --------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches without executing code: only numpy array rebuilding is allowed."""

    ALLOWED = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        short = module.rsplit(".", 1)[-1]
        if module.split(".")[0] == "numpy" and (short, name) in self.ALLOWED:
            return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles spell bytes
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: not a CIFAR python batch (a {type(entry).__name__}, not a dict)")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"{path}: CIFAR batch lacks 'data' or {label_key!r}")
    try:
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: malformed CIFAR batch ({str(e).splitlines()[0]})") from None
    if len(images) != len(labels):
        raise ValueError(f"{path}: malformed CIFAR batch ({len(images)} images, {len(labels)} labels)")
    return images, labels


def _cifar(
    name: str, folder: str, train: list[str], test: list[str], label_key: str, classes: int, root: Path
) -> ImageDataset:
    def read(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [read_cifar_batch(_find(root, name, [f], [folder, "."]), label_key) for f in files]
        return torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(
            np.concatenate([p[1] for p in parts])
        )

    return ImageDataset(name, *read(train), *read(test), classes)


@register_dataset(
    "cifar10", needs_root=True, description="CIFAR-10 python batches in ROOT/cifar-10-batches-py", augment=CIFAR_AUGMENT
)
def load_cifar10(root: Path) -> ImageDataset:
    return _cifar(
        "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10, root
    )


@register_dataset(
    "cifar100", needs_root=True, description="CIFAR-100 python files in ROOT/cifar-100-python", augment=CIFAR_AUGMENT
)
def load_cifar100(root: Path) -> ImageDataset:
    return _cifar("cifar100", "cifar-100-python", ["train"], ["test"], "fine_labels", 100, root)


# --- SVHN: MATLAB files -----------------------------------------------------------------------


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a MATLAB file ({e})") from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: SVHN file lacks 'X' or 'y'")
    x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)  # (H, W, C, N) -> (N, C, H, W)
    y = mat["y"].astype(np.int64).reshape(-1) % 10  # SVHN labels '0' as 10
    return x, y


@register_dataset(
    "svhn",
    needs_root=True,
    description="SVHN train_32x32.mat / test_32x32.mat in ROOT (or ROOT/svhn)",
    augment=Augment(crop_padding=2),
)
def load_svhn(root: Path) -> ImageDataset:
    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = read_svhn_mat(_find(root, "svhn", [f"{split}_32x32.mat"], [".", "svhn", "SVHN"]))
        return torch.from_numpy(x), torch.from_numpy(y)

    return ImageDataset("svhn", *read("train"), *read("test"), 10)


# --- released corruption benchmarks: CIFAR-10-C, CIFAR-100-C (.npy), Tiny-ImageNet-C (JPEG tree) ---------------

RELEASED_C = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C", "tinyimagenet": "Tiny-ImageNet-C"}


def read_released_c(
    root: str | Path, dataset: str, corruption: str, severity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N, C, H, W) and labels of one corruption at one severity from Hendrycks & Dietterich's files.

    CIFAR-10/100-C: ``ROOT/CIFAR-10-C/<corruption>.npy`` is uint8 (5 n, 32, 32, 3), severity-major (rows
    ``[(s-1) n, s n)`` are severity ``s`` of the n test images in order) and ``labels.npy`` the labels
    repeated 5 times; memory-mapped, so one severity costs one slice. Tiny-ImageNet-C:
    ``ROOT/Tiny-ImageNet-C/<corruption>/<s>/<wnid>/*.JPEG``; labels are the sorted wnids' indices.
    """
    if dataset not in RELEASED_C:
        raise ValueError(f"no released corruption benchmark for {dataset!r}; known: {', '.join(RELEASED_C)}")
    root = Path(root).expanduser()
    folder = RELEASED_C[dataset]
    if dataset == "tinyimagenet":
        return _read_jpeg_tree(_find_dir(root, folder, [corruption, str(severity)]))
    images = np.load(_find(root, folder, [f"{corruption}.npy"], [folder, "."]), mmap_mode="r")
    labels = np.load(_find(root, folder, ["labels.npy"], [folder, "."]), mmap_mode="r")
    if images.ndim != 4 or images.shape[0] % 5 or images.shape[3] not in (1, 3) or len(labels) != len(images):
        raise ValueError(
            f"{folder}/{corruption}.npy: expected (5 n, H, W, C) images and 5 n labels, got "
            f"{images.shape} and {labels.shape}"
        )
    n = len(images) // 5
    rows = slice((severity - 1) * n, severity * n)
    x = torch.from_numpy(np.ascontiguousarray(images[rows].transpose(0, 3, 1, 2)).astype(np.uint8))
    return x, torch.from_numpy(np.asarray(labels[rows], dtype=np.int64))


def _find_dir(root: Path, folder: str, parts: list[str]) -> Path:
    for base in (root / folder, root):
        if base.joinpath(*parts).is_dir():
            return base.joinpath(*parts)
    raise FileNotFoundError(f"{folder}: expected the folder {root / folder / Path(*parts)} under the corruption root")


def _read_jpeg_tree(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    xs, ys = [], []
    for label, wnid in enumerate(classes):
        for path in sorted((folder / wnid).glob("*.JPEG")):
            with Image.open(path) as im:
                xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise FileNotFoundError(f"{folder}: no <wnid>/*.JPEG images")
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64)


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
