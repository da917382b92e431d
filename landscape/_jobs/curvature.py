"""Curvature and perturbation sweeps of a checkpoint (the CLI's ``hessian`` and ``sweep``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..curvature import hessian
from ..sweeps import SweepSettings, sweep
from .options import EvalOptions, checkpoint_problem, process_device


def hessian_analysis(
    ckpt: str | Path,
    out: str | Path,
    opts: EvalOptions,
    *,
    top_k: int = 5,
    which: str = "largest",
    tol: float = 1e-3,
    trace_matvecs: int = 0,
    trace_method: str = "hutch++",
    density: bool = False,
    density_probes: int = 10,
    density_steps: int = 80,
    curvature: str = "hessian",
    batches: int = 0,
    batch_size: int = 128,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """Top-k eigenpairs (with residuals), optionally the trace and the spectral density, of a checkpoint's loss
    over the first split of ``opts``, written to a ``kind="hessian"`` file (see :func:`landscape.hessian`)."""
    device = process_device(opts.device)
    problem = checkpoint_problem(ckpt, opts, device)
    hessian(
        problem,
        top_k=top_k,
        which=which,
        tol=tol,
        trace=trace_matvecs,
        trace_method=trace_method,
        density=density,
        density_probes=density_probes,
        density_steps=density_steps,
        curvature=curvature,
        batches=batches,
        batch_size=batch_size,
        split=opts.splits[0],
        seed=seed,
        out=out,
        resume=resume,
        overwrite=overwrite,
        progress=opts.progress,
        log=log,
    )
    return Path(out)


def sweep_analysis(
    ckpt: str | Path,
    out: str | Path,
    radii: np.ndarray,
    opts: EvalOptions,
    *,
    kinds: list[str],
    settings: SweepSettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    log=None,
) -> Path:
    """Loss/accuracy against perturbation radius for each kind, one point per (kind, radius), resumable."""
    s = settings or SweepSettings()
    device = process_device(opts.device)
    problem = checkpoint_problem(ckpt, opts, device)
    sweep(
        problem,
        radii,
        kinds=kinds,
        trials=s.trials,
        steps=s.steps,
        normalize=s.normalize,
        eta=s.eta,
        seed=s.seed,
        split=opts.splits[0],
        out=out,
        resume=resume,
        overwrite=overwrite,
        progress=opts.progress,
        log=log,
    )
    return Path(out)


__all__ = ["hessian_analysis", "sweep_analysis"]
