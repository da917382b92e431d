"""Surfaces of checkpoints: random directions, interpolation between two, a trajectory's PCA plane, Hessian
eigenvector axes (the CLI's ``surface``, ``interpolate``, ``trajectory``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landscape.trainers.rundir import trajectory_checkpoints

from ..surfaces import interpolate, surface, trajectory
from .options import EvalOptions, surface_job


def random_surface(
    ckpt: str | Path,
    out: str | Path,
    xs: np.ndarray,
    ys: np.ndarray | None,
    opts: EvalOptions,
    *,
    norm: str = "filter",
    ignore: str = "biasbn",
    seed: int = 0,
    dir_type: str = "weights",
    orthogonal: bool = False,
    direction_seeds: int = 1,
    refine: float | None = None,
    bootstrap: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """Loss/accuracy along 1 or 2 normalized random directions around a checkpoint (Li et al. 2018), over
    ``direction_seeds`` pairs of them."""
    return surface_job(
        ckpt,
        out,
        opts,
        lambda p, **kw: surface(
            p,
            xs,
            ys,
            norm=norm,
            ignore=ignore,
            seed=seed,
            dir_type=dir_type,
            orthogonal=orthogonal,
            direction_seeds=direction_seeds,
            refine=refine,
            bootstrap=bootstrap,
            resume=resume,
            overwrite=overwrite,
            log=log,
            **kw,
        ),
    )


def interpolation_surface(
    ckpt_a: str | Path,
    ckpt_b: str | Path,
    out: str | Path,
    xs: np.ndarray,
    opts: EvalOptions,
    *,
    dir_type: str = "states",
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """The 1-D line from checkpoint A (x=0) to checkpoint B (x=1) and beyond, un-normalized."""
    return surface_job(
        ckpt_a,
        out,
        opts,
        lambda p, **kw: interpolate(
            p, ckpt_b, xs, dir_type=dir_type, resume=resume, overwrite=overwrite, log=log, **kw
        ),
    )


def trajectory_surface(
    run_dir: str | Path,
    out: str | Path,
    xs: np.ndarray | None,
    ys: np.ndarray | None,
    opts: EvalOptions,
    *,
    ignore: str = "biasbn",
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """A 2-D surface around a run's final weights on its top-2 PCA directions, with the projected path."""
    snapshots, final = trajectory_checkpoints(run_dir)
    return surface_job(
        final,
        out,
        opts,
        lambda p, **kw: trajectory(
            p,
            snapshots,
            xs,
            ys,
            ignore=ignore,
            resume=resume,
            overwrite=overwrite,
            log=log,
            attrs={"run_dir": str(run_dir)},
            **kw,
        ),
    )


def hessian_surface(
    ckpt: str | Path,
    out: str | Path,
    xs: np.ndarray,
    ys: np.ndarray | None,
    opts: EvalOptions,
    *,
    hessian_file: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """A surface whose axes are the top Hessian eigenvectors (unit norm), read from ``hessian_file`` or computed
    on the training split."""
    return surface_job(
        ckpt,
        out,
        opts,
        lambda p, **kw: surface(
            p,
            xs,
            ys,
            directions="hessian",
            hessian=hessian_file,
            seed=seed,
            resume=resume,
            overwrite=overwrite,
            log=log,
            **kw,
        ),
        extra=() if hessian_file else ("train",),
    )


__all__ = ["random_surface", "interpolation_surface", "trajectory_surface", "hessian_surface"]
