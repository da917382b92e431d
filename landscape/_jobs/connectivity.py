"""Connectivity between two checkpoints (the demo's pairs of seeds): the straight line, the aligned line and a
trained curve, each written as its own file."""

from __future__ import annotations

from pathlib import Path

from ..connectivity import barrier, connect
from .options import EvalOptions, checkpoint_problem, process_device


def connectivity_analysis(
    ckpt_a: str | Path,
    ckpt_b: str | Path,
    folder: str | Path,
    opts: EvalOptions,
    *,
    name: str,
    curve_epochs: int = 5,
    points: int = 11,
) -> dict[str, Path]:
    """Write ``barrier_NAME.h5`` (the line), ``barrier_aligned_NAME.h5`` (after weight matching) and
    ``curve_NAME.h5`` (a Bezier curve trained for ``curve_epochs``) from A to B into ``folder`` (each resumed or
    reused when there); ``{category: file}``."""
    problem = checkpoint_problem(ckpt_a, opts, process_device(opts.device), ("train",))
    folder = Path(folder)
    files = {k: folder / f"{k}_{name}.h5" for k in ("barrier", "barrier_aligned", "curve")}
    for kind, out in files.items():
        if kind == "curve":
            connect(problem, ckpt_b, epochs=curve_epochs, points=points, splits=opts.splits, out=out, resume=True,
                    progress=opts.progress)  # fmt: skip
        else:
            barrier(problem, ckpt_b, align="weights" if kind == "barrier_aligned" else None, points=points,
                    splits=opts.splits, out=out, resume=True, progress=opts.progress)  # fmt: skip
    return files
