"""Mode connectivity: are two minima one basin? The loss barrier along the straight line between them.

:func:`barrier` evaluates the loss (and metrics) of every split along ``(1 - t) θ_a + t θ_b`` — the problem's weights
at ``t = 0``, the other model's at ``t = 1`` — through :func:`~landscape.interpolate`, and measures the barrier
``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` (Frankle et al. 2020; Entezari et al. 2022). BatchNorm running statistics
are recomputed at every ``t`` by default: interpolated statistics do not describe the interpolated weights (Jordan et
al. 2022), which ``bn="eval"`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .problem import Problem
from .surfaces import BNMode, interpolate


@dataclass
class Barrier:
    """The loss along the line between two models, and its barrier.

    Attributes:
        t: the points of the line, 0 (the problem's model) to 1 (the other).
        values: ``"{split}_{metric}"`` along ``t`` (``values["train_loss"][i]`` at ``t[i]``), as a 1-D
            :class:`~landscape.Surface` holds them.
        barrier: per split, ``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` of its loss (0 when the line never rises
            above the chord between its ends).
        attrs: the settings and provenance (also in the file with ``out=``).
        path: the file written (``""`` in memory).
    """

    t: np.ndarray
    values: dict[str, np.ndarray]
    barrier: dict[str, float]
    attrs: dict = field(default_factory=dict)
    path: str = ""


def loss_barrier(t: np.ndarray, loss: np.ndarray) -> float:
    """``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` on a line sampled at ``t`` (which holds 0 and 1).

    Args:
        t: increasing points from 0 to 1.
        loss: the loss at each point.

    Returns:
        The barrier height (0 or more: the ends lie on the chord).

    Raises:
        ValueError: ``t`` does not start at 0 and end at 1.
    """
    if not (np.isclose(t[0], 0) and np.isclose(t[-1], 1)):
        raise ValueError("a barrier is measured on a line from t=0 to t=1")
    chord = (1 - t) * loss[0] + t * loss[-1]
    return float(max(0.0, np.max(loss - chord)))


def barrier(
    problem: Problem,
    other: Any,
    *,
    points: int = 11,
    bn: BNMode = "recompute",
    splits: Sequence[str] | None = None,
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Barrier | None:
    """The loss and metrics of every split along the straight line from the problem's weights to ``other``'s, and
    the barrier height of each split's loss.

    Args:
        problem: the model at ``t = 0``, its data and loss.
        other: the model at ``t = 1``: a model of the same architecture, its state dict, or a file of either kind.
        points: points on the line, evenly spaced from 0 to 1 (at least 3).
        bn: ``"recompute"`` (default: BatchNorm statistics recomputed on ``train`` at every point) or ``"eval"`` (the
            interpolated running statistics).
        splits: which of the problem's splits to evaluate (``None``: all).
        fast: evaluate a traced view of the model (same numbers to ~1e-6); ``False`` runs it as written.
        out: write the line as a 1-D surface file (``directions="interpolation"``, with ``barrier_<split>``
            attributes) that ``plot``, ``compare`` and ``explore`` read; ``None``: in memory.
        resume: finish the file a killed job left at ``out``.
        overwrite: replace an earlier surface at ``out``.
        progress: a progress bar over the points.
        log: called with one-line messages; ``None``: silent.

    Returns:
        The :class:`Barrier` (under ``torchrun`` with ``out=``, ranks other than 0 get ``None``).

    Raises:
        ValueError: fewer than 3 points, another architecture (a tensor missing or of another shape), or a bad
            argument (as for :func:`~landscape.interpolate`).
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an integer >= 3, got {points!r}")
    t = np.linspace(0.0, 1.0, points)
    line = interpolate(
        problem, other, t, dir_type="states", splits=splits, bn=bn, fast=fast, out=out, resume=resume,
        overwrite=overwrite, progress=progress, log=log, attrs={"analysis": "barrier"},
    )  # fmt: skip
    if line is None:  # a rank other than 0 of a torchrun job writing out=
        return None
    heights = {name[: -len("_loss")]: loss_barrier(t, v) for name, v in line.values.items() if name.endswith("_loss")}
    if out is not None:
        _record(Path(out), heights)
    return Barrier(t, dict(line.values), heights, {**line.attrs, **_attrs(heights)}, str(out or ""))


def _attrs(heights: dict[str, float]) -> dict[str, float]:
    return {f"barrier_{split}": h for split, h in heights.items()}


def _record(path: Path, heights: dict[str, float]) -> None:
    """The barrier heights as attributes of the written line."""
    from .io.files import open_h5

    with open_h5(path, "r+") as f:
        f.attrs.update(_attrs(heights))


__all__ = ["Barrier", "barrier", "loss_barrier"]
