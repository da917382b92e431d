"""Analyses of checkpoints as jobs: load, build directions, fill a surface file (resumable, multi-process)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from trainers import load_checkpoint
from trainers.train import resolve_device

from .directions import DIR_TYPES, Direction, difference, pca_directions, random_directions, target_tensors
from .evaluation import eval_sets
from .parallel import Group, close_group, init_group
from .store import sha256
from .surface import prepare_and_fill

SPLITS = ("train", "test")


@dataclass
class EvalOptions:
    """How grid points are evaluated (shared by every surface job)."""

    splits: list[str] = field(default_factory=lambda: ["train"])
    samples: int | None = None
    sample_seed: int = 0
    batch_size: int = 1000
    bn: str = "eval"
    device: str = "auto"
    data_root: str | None = None
    compile: bool = False
    progress: bool = True

    def validate(self) -> None:
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"--split must name train and/or test, got {','.join(self.splits) or 'nothing'}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")


def _attrs(meta: dict, ckpt: Path, opts: EvalOptions, **extra) -> dict:
    return {
        "method": meta["method"]["name"], "model": meta["model"]["name"], "dataset": meta["dataset"]["name"],
        "checkpoint": str(ckpt), "checkpoint_sha256": sha256(ckpt), "samples": -1 if opts.samples is None else opts.samples,
        "sample_seed": opts.sample_seed, "bn": opts.bn, **extra,
    }


def _run(out: str | Path, ckpt: str | Path, make_directions: Callable[[nn.Module], list[Direction]], xs, ys,
         opts: EvalOptions, attrs: dict, *, dir_type: str, resume: bool, overwrite: bool,
         extras: Callable[[list[Direction]], dict] | None = None, log: Callable[[str], None] | None = None) -> Path:
    opts.validate()
    if dir_type not in DIR_TYPES:
        raise ValueError(f"unknown --dir-type {dir_type!r}; expected one of {DIR_TYPES}")
    device = resolve_device(opts.device)
    group, rank_device = init_group(device.type)
    try:
        device = rank_device or device
        model, meta = load_checkpoint(ckpt, device)
        data_root = opts.data_root or meta["config"].get("data_root")
        sets = eval_sets(meta["dataset"], opts.splits, samples=opts.samples, seed=opts.sample_seed, data_root=data_root,
                         device=device, batch_size=opts.batch_size)
        bn_data = None
        if opts.bn == "recompute":
            bn_data = eval_sets(meta["dataset"], ["train"], samples=opts.samples, seed=opts.sample_seed, data_root=data_root,
                                device=device, batch_size=opts.batch_size)["train"]
        forward = torch.compile(model) if opts.compile else None
        attrs = {**_attrs(meta, Path(ckpt), opts), "dir_type": dir_type, **attrs}
        prepare_and_fill(Path(out), model, lambda: make_directions(model), xs, ys, sets, attrs, resume=resume,
                         overwrite=overwrite, group=group, extras=extras, log=log, dir_type=dir_type, bn=opts.bn, bn_data=bn_data,
                         forward=forward, progress=opts.progress)
    finally:
        close_group()
    return Path(out)


def random_surface(ckpt: str | Path, out: str | Path, xs: np.ndarray, ys: np.ndarray | None, opts: EvalOptions, *,
                   norm: str = "filter", ignore: str = "biasbn", seed: int = 0, dir_type: str = "weights",
                   orthogonal: bool = False, resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """Loss/accuracy along 1 or 2 normalized random directions around a checkpoint (Li et al. 2018)."""

    def make(model: nn.Module) -> list[Direction]:
        return random_directions(target_tensors(model, dir_type), count=1 if ys is None else 2, seed=seed, norm=norm,
                                 ignore=ignore, orthogonal=orthogonal)

    attrs = {"directions": "random", "norm": norm, "ignore": ignore, "seed": seed, "orthogonal": orthogonal}
    return _run(out, ckpt, make, xs, ys, opts, attrs, dir_type=dir_type, resume=resume, overwrite=overwrite, log=log)


def interpolation_surface(ckpt_a: str | Path, ckpt_b: str | Path, out: str | Path, xs: np.ndarray, opts: EvalOptions, *,
                          dir_type: str = "states", resume: bool = False, overwrite: bool = False, log=None) -> Path:
    """The 1-D line from checkpoint A (x=0) to checkpoint B (x=1) and beyond, un-normalized."""
    model_b, meta_b = load_checkpoint(ckpt_b)

    def make(model: nn.Module) -> list[Direction]:
        return [difference({k: v.cpu() for k, v in target_tensors(model, dir_type).items()}, target_tensors(model_b, dir_type))]

    attrs = {"directions": "interpolation", "checkpoint_b": str(ckpt_b), "checkpoint_b_sha256": sha256(ckpt_b),
             "norm": "none", "ignore": "none", "seed": -1}
    return _run(out, ckpt_a, make, xs, None, opts, attrs, dir_type=dir_type, resume=resume, overwrite=overwrite, log=log)


def trajectory_checkpoints(run_dir: str | Path) -> tuple[list[Path], Path]:
    run_dir = Path(run_dir)
    found = sorted(((int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("epoch_*.pt")
                    if (m := re.fullmatch(r"epoch_(\d+)\.pt", p.name))))
    final = run_dir / "final.pt"
    if not final.is_file():
        raise FileNotFoundError(f"{run_dir} has no final.pt (is it a finished run directory?)")
    if len(found) < 2:
        raise ValueError(f"{run_dir} has {len(found)} epoch checkpoints; PCA of a trajectory needs >= 2 (train with --save-every 1)")
    return [p for _, p in found], final


def pca_of_run(run_dir: str | Path, ignore: str = "biasbn", dir_type: str = "weights"):
    """PCA directions of a run's saved checkpoints relative to its final weights (Li et al. Sec. 7)."""
    paths, final = trajectory_checkpoints(run_dir)
    center = target_tensors(load_checkpoint(final)[0], dir_type)
    trajectory = [target_tensors(load_checkpoint(p)[0], dir_type) for p in paths]
    return pca_directions(trajectory, center, ignore)  # type: ignore[arg-type]


def auto_range(values: np.ndarray, num: int = 21, margin: float = 0.25) -> np.ndarray:
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = max(hi - lo, 1e-6)
    return np.linspace(lo - margin * span, hi + margin * span, num)


def trajectory_surface(run_dir: str | Path, out: str | Path, xs: np.ndarray | None, ys: np.ndarray | None,
                       opts: EvalOptions, *, ignore: str = "biasbn", resume: bool = False, overwrite: bool = False,
                       log=None) -> Path:
    """A 2-D surface around a run's final weights on its top-2 PCA directions, with the projected path."""
    dirs, ratio, coords = pca_of_run(run_dir, ignore)
    xs = auto_range(coords[:, 0].numpy()) if xs is None else xs
    ys = auto_range(coords[:, 1].numpy()) if ys is None else ys
    extras = {"proj_xcoord": coords[:, 0].numpy(), "proj_ycoord": coords[:, 1].numpy(),
              "explained_variance_ratio_": ratio.numpy()}
    _, final = trajectory_checkpoints(run_dir)
    attrs = {"directions": "pca", "norm": "none", "ignore": ignore, "seed": -1, "run_dir": str(run_dir)}
    return _run(out, final, lambda model: dirs, xs, ys, opts, attrs, dir_type="weights", resume=resume,
                overwrite=overwrite, extras=lambda d: extras, log=log)
