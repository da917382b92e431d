"""The image-corruption suite (Hendrycks & Dietterich): 15 common + 4 extra corruptions at severities 1-5.

Applied with ``imagecorruptions-imaug`` (the maintained fork; PyPI ``imagecorruptions`` 1.1.2 fails on
NumPy 2). Every image gets its own seed derived from ``(seed, corruption, severity, index)``, so a
corrupted split is the same on every run, in any order, on any number of workers. The library needs
images of at least 32x32: smaller ones (digits, MNIST) are upsampled (nearest) by an integer factor,
corrupted, and area-averaged back. Note that its severity constants are ImageNet-C's, so generating
"CIFAR-10-C" here does not reproduce the released files (read those with :mod:`landscape.data.formats`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import multiprocessing
import os
import signal
import sys
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from landscape._system.files import atomic_write

COMMON = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL = COMMON + EXTRA
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIZE = 32
_SEEDED = {"impulse_noise", "glass_blur"}  # draw from their own generator, given by a seed= argument


def parse_corruptions(spec: str) -> list[str]:
    """``all`` (19), ``common`` (15), ``extra`` (4) or a comma-separated list of names."""
    groups = {"all": ALL, "common": COMMON, "extra": EXTRA}
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        names += groups.get(part, (part,))
    bad = [n for n in names if n not in ALL]
    if bad or not names:
        raise ValueError(
            f"unknown corruption {', '.join(bad) or '(none)'}; choose from all, common, extra, {', '.join(ALL)}"
        )
    return list(dict.fromkeys(names))


def parse_severities(spec: str) -> list[int]:
    """``1-5``, ``3`` or ``1,3,5``."""
    try:
        out: list[int] = []
        for part in (p.strip() for p in str(spec).split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"severities={spec!r}: expected e.g. 1-5 or 1,3,5") from None
    if not out or any(s not in SEVERITIES for s in out):
        raise ValueError(f"severities={spec!r}: must lie in 1..5")
    return sorted(set(out))


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """A 32-bit seed per (run seed, corruption, severity, image), stable across processes and versions."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity, index]).generate_state(1)[0])


def corrupt_image(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One uint8 (C, H, W) image corrupted; same shape and dtype out."""
    from imagecorruptions import corrupt

    c, h, w = img.shape
    factor = max(1, -(-MIN_SIZE // min(h, w)))
    hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
    if factor > 1:
        hwc = hwc.repeat(factor, axis=0).repeat(factor, axis=1)
    np.random.seed(seed)  # the library draws from the global generator
    kwargs = {"seed": seed} if name in _SEEDED else {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # the library's 0/0 on flat images: its own business
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.asarray(
            corrupt(hwc if c == 3 else hwc[..., 0], severity=severity, corruption_name=name, **kwargs), dtype=np.float64
        )
    out = out[: hwc.shape[0], : hwc.shape[1]]  # a few corruptions return a slightly larger canvas
    if c == 1:
        out = out.mean(axis=2, keepdims=True)  # grey in, grey out (the library makes it RGB)
    chw = torch.from_numpy(out.transpose(2, 0, 1).copy())
    if factor > 1:
        chw = F.avg_pool2d(chw[None], factor)[0]
    return chw.round().clamp(0, 255).to(torch.uint8).numpy()


def _corrupt_chunk(args: tuple) -> np.ndarray:
    images, name, severity, seed, indices = args
    return np.stack(
        [
            corrupt_image(img, name, severity, image_seed(seed, name, severity, int(i)))
            for img, i in zip(images, indices)
        ]
    )


def corrupt_images(
    images: Tensor,
    name: str,
    severity: int,
    seed: int = 0,
    *,
    indices: Tensor | None = None,
    workers: int = 1,
    chunk: int = 64,
) -> Tensor:
    """A uint8 (N, C, H, W) batch corrupted image by image. Image ``i`` is seeded by ``indices[i]`` (its index
    in the full split; default ``i``), so a subset gets the same corrupted images as the full split, whatever
    ``workers``."""
    if name not in ALL:
        raise ValueError(f"unknown corruption {name!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    x = images.cpu().numpy()
    ids = np.arange(len(x)) if indices is None else np.asarray(indices)
    jobs = [(x[i : i + chunk], name, severity, seed, ids[i : i + chunk]) for i in range(0, len(x), chunk)]
    if workers > 1 and len(jobs) > 1:
        parts = list(_pool(workers).map(_corrupt_chunk, jobs))
    else:
        parts = [_corrupt_chunk(j) for j in jobs]
    return torch.from_numpy(np.concatenate(parts)) if parts else images.clone()


@functools.cache
def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process, reused by every call: starting workers (spawn, as fork with torch's threads can
    hang) costs seconds, more than corrupting a small split."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
    atexit.register(pool.shutdown)
    return pool


def die_with_parent() -> None:
    """In a worker: be killed when the process that started it dies (Linux ``PR_SET_PDEATHSIG``), so a
    ``kill -9`` of the job leaves no workers behind (nor the resource tracker they keep alive)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        if os.getppid() == 1:  # the parent died before the call took effect
            os._exit(1)


def cache_dir() -> Path:
    return Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape")) / "corruptions"


def corrupted_split(
    images: Tensor,
    key: str,
    name: str,
    severity: int,
    seed: int = 0,
    *,
    indices: Tensor | None = None,
    cache: Path | None = None,
    workers: int = 1,
) -> Tensor:
    """:func:`corrupt_images` cached on disk as ``<cache>/<key>/<name>_s<severity>_seed<seed>.npy``.

    ``key`` names the images (dataset, split and which indices); a cached file whose shape does not
    match is recomputed. Files are written atomically, so an interrupted run leaves none half-made.
    """
    path = (cache or cache_dir()) / key / f"{name}_s{severity}_seed{seed}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape == tuple(images.shape) and cached.dtype == np.uint8:
                return torch.from_numpy(cached)
        except (ValueError, OSError, EOFError):  # a truncated or empty file (a killed writer): made again below
            pass
    out = corrupt_images(images, name, severity, seed, indices=indices, workers=workers)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the temporary name
            np.save(f, out.numpy())

    try:
        atomic_write(path, write, nbytes=out.numel())
    except OSError as e:  # a read-only or full cache costs time, not the result
        warnings.warn(f"corruptions not cached ({e}); set LANDSCAPE_CACHE to a writable folder", stacklevel=2)
    return out


def split_key(dataset: str, split: str, total: int, indices: Tensor) -> str:
    """Cache folder name of a split or of a fixed subset of it."""
    if len(indices) == total:
        return f"{dataset}/{split}-{total}"
    return f"{dataset}/{split}-{total}-subset-{hashlib.sha1(np.asarray(indices, np.int64).tobytes()).hexdigest()[:12]}"


class CorruptHalf:
    """The DAMP paper's Algorithm 2: a corruption applied to a random half of every training batch.

    The paper leaves the severity open; each chosen image draws one uniformly from ``severities``.
    Choices and per-image seeds come from the loader's generator, so a resumed run sees the same
    corrupted images. Runs on the CPU (the library is numpy), so it costs ~1 ms per corrupted image.
    """

    def __init__(self, name: str, severities: list[int]) -> None:
        if name not in ALL:
            raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(ALL)}")
        self.name, self.severities = name, list(severities)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        chosen = torch.randperm(n, generator=generator)[: n // 2]
        severity = torch.tensor(self.severities)[
            torch.randint(len(self.severities), (len(chosen),), generator=generator)
        ]
        seeds = torch.randint(2**31 - 1, (len(chosen),), generator=generator)
        images = x[chosen.to(x.device)].cpu().numpy()
        out = np.stack(
            [corrupt_image(img, self.name, int(s), int(seed)) for img, s, seed in zip(images, severity, seeds)]
        )
        x = x.clone()
        x[chosen.to(x.device)] = torch.from_numpy(out).to(x.device)
        return x


__all__ = ["COMMON", "EXTRA", "SEVERITIES", "corrupt_image", "corrupt_images"]
