"""What every checkpoint job shares: how the checkpoint's data is evaluated, the device of this process, and
the checkpoint turned into a :class:`~landscape.problem.Problem`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from landscape._system.device import resolve_device
from landscape._system.ranks import init_group

from ..problem import Problem

SPLITS = ("train", "test")


@dataclass
class EvalOptions:
    """How a checkpoint's data is evaluated (shared by every checkpoint job)."""

    splits: list[str] = field(default_factory=lambda: ["train"])
    samples: int | None = None
    sample_seed: int = 0
    batch_size: int = 1000
    bn: str = "eval"
    device: str = "auto"
    data_root: str | None = None
    compile: bool | None = None  # None: automatic (landscape.surfaces.run_grid)
    fast: bool = True
    progress: bool = True


def process_device(name: str) -> torch.device:
    """This process's device; under ``torchrun`` it joins the job (a GPU per rank) for the process's lifetime."""
    device = resolve_device(name)
    _, rank_device = init_group(device.type)
    return rank_device or device


def checkpoint_problem(
    ckpt: str | Path, opts: EvalOptions, device: torch.device, extra: tuple[str, ...] = ()
) -> Problem:
    """The checkpoint as a :class:`Problem` over the splits of ``opts`` (and ``extra`` ones)."""
    splits = list(opts.splits) + [s for s in extra if s not in opts.splits]
    return Problem.from_checkpoint(
        ckpt,
        splits,
        samples=opts.samples,
        sample_seed=opts.sample_seed,
        batch_size=opts.batch_size,
        data_root=opts.data_root,
        device=device,
    )


def surface_job(
    ckpt: str | Path, out: str | Path, opts: EvalOptions, analysis: Callable[..., object], extra: tuple[str, ...] = ()
) -> Path:
    device = process_device(opts.device)
    problem = checkpoint_problem(ckpt, opts, device, extra + (("train",) if opts.bn == "recompute" else ()))
    analysis(
        problem,
        splits=opts.splits,
        bn=opts.bn,
        bn_split="train",
        compile=opts.compile,
        fast=opts.fast,
        progress=opts.progress,
        out=out,
    )
    return Path(out)


__all__ = ["EvalOptions", "checkpoint_problem"]
