"""Mode connectivity: are two minima one basin? The loss barrier along the straight line between them.

:func:`barrier` evaluates the loss (and metrics) of every split along ``(1 - t) θ_a + t θ_b`` — the problem's weights
at ``t = 0``, the other model's at ``t = 1`` — through :func:`~landscape.interpolate`, and measures the barrier
``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` (Frankle et al. 2020; Entezari et al. 2022). BatchNorm running statistics
are recomputed at every ``t`` by default: interpolated statistics do not describe the interpolated weights (Jordan et
al. 2022), which ``bn="eval"`` shows; ``bn="repair"`` restores every hidden unit's statistics as REPAIR does
(:mod:`landscape._repair`). ``align=`` first permutes the other model's units to match (:func:`~landscape.align`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, cast

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from ._curves import CURVES, CurveKind, coefficients, default_optimizer, on_line, train_epoch
from ._driver import Output, open_existing
from ._system.files import atomic_write, changed_options
from ._system.ranks import join_group
from .alignment import METHODS, Method
from .alignment import align as align_models
from .directions import same_architecture, target_tensors
from .io import Surface, read_surface
from .io.surface import surface_progress
from .problem import Problem, weights_sha256
from .snapshots import load_state
from .surfaces import GridEvaluation, auto_range, coordinates, interpolate, run_grid

LineBN = Literal["recompute", "eval", "repair"]
LINE_BN = ("recompute", "eval", "repair")


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
        The barrier height (0 or more: the ends lie on the chord; NaN where a loss along the line is not finite).

    Raises:
        ValueError: ``t`` does not start at 0 and end at 1.
    """
    if not (np.isclose(t[0], 0) and np.isclose(t[-1], 1)):
        raise ValueError("a barrier is measured on a line from t=0 to t=1")
    if not np.all(np.isfinite(loss)):  # a diverged point: no height to report, not 0
        return float("nan")
    chord = (1 - t) * loss[0] + t * loss[-1]
    return float(max(0.0, np.max(loss - chord)))


def barrier(
    problem: Problem,
    other: Any,
    *,
    points: int = 11,
    align: Method | None = None,
    bn: LineBN = "recompute",
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
        align: ``"weights"`` or ``"activations"``: first permute ``other``'s units to match the problem's model
            (:func:`~landscape.align`; activations on the problem's ``train`` split); ``None``: as it is.
        bn: ``"recompute"`` (default: BatchNorm statistics recomputed on ``train`` at every point), ``"eval"`` (the
            interpolated running statistics) or ``"repair"`` (REPAIR: every hidden unit's mean and standard deviation
            set to the interpolation of the endpoints', BatchNorm recomputed).
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
        ValueError: fewer than 3 points, another architecture (a tensor missing or of another shape), an unknown
            ``align`` or ``bn``, a model that cannot be traced (``align``, ``"repair"``), a loss that changes between
            two evaluations of a batch, or a bad argument (as for :func:`~landscape.interpolate`).
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an integer >= 3, got {points!r}")
    if align is not None and align not in METHODS:
        raise ValueError(f"align must be None or one of {METHODS}, got {align!r}")
    if bn not in LINE_BN:
        raise ValueError(f"bn must be one of {LINE_BN}, got {bn!r}")
    stats_split = "train" if "train" in problem.splits else next(iter(problem.splits))
    problem.check_deterministic(stats_split)
    state = other_state(problem, other, align, stats_split, log)
    target = problem
    if bn == "repair":
        from ._repair import repaired

        target, state = repaired(problem, state, stats_split)
    t = np.linspace(0.0, 1.0, points)
    attrs = {"analysis": "barrier", "align": align or "none", "bn": bn}
    line = interpolate(
        target, state, t, dir_type="states", splits=splits, bn="eval" if bn == "eval" else "recompute", fast=fast,
        out=out, resume=resume, overwrite=overwrite, progress=progress, log=log, attrs=attrs,
    )  # fmt: skip
    if line is None:  # a rank other than 0 of a torchrun job writing out=
        return None
    return Barrier(*_heights(line, out))


def _heights(line: Surface, out: str | Path | None) -> tuple[np.ndarray, dict, dict[str, float], dict, str]:
    """(t, values, barrier per split, attrs, path) of an evaluated line or curve; the heights recorded in ``out``."""
    t = line.xcoordinates
    heights = {name[: -len("_loss")]: loss_barrier(t, v) for name, v in line.values.items() if name.endswith("_loss")}
    if out is not None:
        _record(Path(out), heights)
    return t, dict(line.values), heights, {**line.attrs, **_attrs(heights)}, str(out or "")


def other_model(problem: Problem, other: Any) -> nn.Module:
    """``other`` as a module: itself, or a copy of the problem's model holding its state (a dict or a file).

    Raises:
        ValueError: a state of another architecture.
    """
    if isinstance(other, nn.Module):
        return other
    state = load_state(other)
    same_architecture(problem.model.state_dict(), state)
    model = copy.deepcopy(problem.model)
    model.load_state_dict(state)
    return model


def other_state(
    problem: Problem, other: Any, align: Method | None, split: str, log: Callable[[str], None] | None
) -> dict:
    """The other endpoint's state dict (on the CPU), aligned to the problem's model when asked."""
    model = other_model(problem, other)
    if align is not None:
        model = align_models(problem.model, model, method=align, data=problem, split=split, log=log)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@dataclass
class Curve(Barrier):
    """A trained curve between two models: the loss along it (as :class:`Barrier`) and its bends.

    Attributes:
        bends: the bends' parameters, in order along the curve (``{name: tensor}`` each).
        history: the mean training loss of each epoch.
        controls: the control points after the first model, minus it, over the whole state (the bends, then the
            other model): ``φ(t) = θ_a + sum_i c_i(t) controls[i]``.
    """

    bends: list[dict[str, Tensor]] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    controls: list[dict[str, Tensor]] = field(default_factory=list)


def connect(
    problem: Problem,
    other: Any,
    *,
    curve: CurveKind = "bezier",
    bends: int = 1,
    epochs: int = 10,
    lr: float = 0.05,
    optimizer: Callable[[list[Tensor]], torch.optim.Optimizer] | None = None,
    align: Method | None = None,
    points: int = 11,
    seed: int = 0,
    split: str = "train",
    splits: Sequence[str] | None = None,
    bn: Literal["recompute", "eval"] = "recompute",
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Curve | None:
    """Train a curve from the problem's weights to ``other``'s (Garipov et al. 2018) and evaluate the loss along it.

    Every batch of ``split`` draws ``t`` uniformly and takes an optimizer step on the bends down the loss at the
    curve's point ``φ(t)`` (:mod:`landscape._curves`: ``torch.func.functional_call``, any ``nn.Module``). The bends
    start on the straight line, so with ``epochs=0`` the curve is the line.

    Args:
        problem: the model at ``t = 0``, its data and loss.
        other: the model at ``t = 1``: a model of the same architecture, its state dict, or a file of either kind.
        curve: ``"bezier"`` (Bernstein weights) or ``"polychain"`` (straight segments through the bends).
        bends: the number of bends (control points between the ends; 1 to 14).
        epochs: passes over ``split`` (0: the untrained curve, the straight line).
        lr: the learning rate of the default optimizer (SGD, momentum 0.9).
        optimizer: ``optimizer(params)`` builds another optimizer over the bends' tensors.
        align: permute ``other``'s units to match first (as for :func:`barrier`).
        points: points along the curve, evenly spaced in ``t`` (at least 3).
        seed: the draws of ``t``.
        split: the split the curve is trained on.
        splits: the splits evaluated along the curve (``None``: all).
        bn: ``"recompute"`` (BatchNorm statistics recomputed at every point, the default) or ``"eval"``.
        fast: as for :func:`~landscape.surface`.
        out: write the curve as a 1-D surface file (``directions="curve"``; its direction groups hold the control
            points minus the first model) that ``plot``, ``compare`` and ``explore`` read; training state is kept
            beside it in ``OUT.train.pt`` after every epoch until the evaluation is written.
        resume: continue a killed job from ``OUT.train.pt`` and the file (the same settings).
        overwrite: start again, replacing an earlier ``out`` and its training state.
        progress: progress bars over the batches and the points.
        log: called with one-line messages (the training loss of each epoch); ``None``: silent.

    Returns:
        The :class:`Curve` (under ``torchrun`` with ``out=``, ranks other than 0 get ``None``).

    Raises:
        ValueError: an unknown ``curve``, ``bn`` or ``align``; bends, epochs, points or lr out of range; no
            ``split``; training state made with other settings; a loss that changes between two evaluations of a
            batch; another architecture.
    """
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    for name, value, low in (("bends", bends, 1), ("epochs", epochs, 0), ("points", points, 3)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (name == "bends" and value > 14):
            raise ValueError(
                f"{name} must be an integer >= {low}" + (" and <= 14" if name == "bends" else "") + f", got {value!r}"
            )
    if optimizer is None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if bn not in ("recompute", "eval"):
        raise ValueError(f"bn must be 'recompute' or 'eval', got {bn!r}")
    if split not in problem.splits:
        raise ValueError(f"no split {split!r} in the problem (it has {', '.join(problem.splits)})")
    output = Output(out, resume, overwrite, progress, log)
    ranks = join_group(problem.device.type)
    if out is not None and ranks.agree(lambda: open_existing(out, "surface", output)):
        finished = _finished(out, problem)
        if finished is not None:
            return finished if ranks.is_main else None
    problem.check_deterministic(split)
    state_b = other_state(problem, other, align, split, log)
    with problem.session():
        state_a = {k: v.detach().clone() for k, v in target_tensors(problem.model, "states").items()}
        a = {k: p.detach().clone() for k, p in problem.model.named_parameters()}
    b = {k: state_b[k].to(v.device, v.dtype) for k, v in a.items()}
    controls = [a, *({k: v.requires_grad_() for k, v in c.items()} for c in on_line(a, b, bends)), b]
    trainable = [t for c in controls[1:-1] for t in c.values()]
    opt = (optimizer or default_optimizer(lr))(trainable)
    generator = torch.Generator().manual_seed(seed)
    settings = {
        "curve": curve, "bends": bends, "lr": float(lr), "seed": seed, "align": align or "none", "split": split,
        "checkpoint_b_sha256": weights_sha256(state_b),
    }  # fmt: skip
    state_file = Path(f"{out}.train.pt") if out is not None else None
    done, history = _restore(state_file, resume, overwrite, settings, trainable, opt, generator)
    bar = tqdm(
        total=max(epochs - done, 0) * len(list(problem.splits[split])), desc="curve", unit="batch",
        disable=not (progress and ranks.is_main),
    )  # fmt: skip
    for epoch in range(done, epochs):
        history.append(train_epoch(problem, controls, opt, curve, split, generator, ranks, bar))
        if state_file is not None and ranks.is_main:
            _save(state_file, epoch + 1, settings, history, trainable, opt, generator)
        if log and ranks.is_main:
            log(f"curve epoch {epoch + 1}/{epochs}: train loss {history[-1]:.4f}")
    bar.close()
    t = np.linspace(0.0, 1.0, points)
    weights = coefficients(curve, bends, t)[:, 1:]
    directions = [_displacement(state_a, state_b, c, i / (bends + 1)) for i, c in enumerate(controls[1:], 1)]
    attrs = {"directions": "curve", "curve": curve, "bends": bends, "epochs": epochs, "seed": seed, "lr": float(lr),
             "align": align or "none", "norm": "none", "analysis": "curve",
             "checkpoint_b_sha256": settings["checkpoint_b_sha256"]}  # fmt: skip
    line = run_grid(
        problem, lambda: directions, t, None, attrs, GridEvaluation(splits, "states", bn, None, None, fast), output,
        {"coefficients": weights, "train_loss_history": np.asarray(history, np.float64)}, path=weights,
    )  # fmt: skip
    if line is None:
        return None
    if state_file is not None:
        state_file.unlink(missing_ok=True)
    bend_tensors = [{k: v.detach().cpu() for k, v in c.items()} for c in controls[1:-1]]
    return Curve(*_heights(line, out), bends=bend_tensors, history=history, controls=directions)


def curve_plane(
    problem: Problem,
    curve: Curve | str | Path,
    *,
    x: Any = None,
    y: Any = None,
    points: int = 21,
    splits: Sequence[str] | None = None,
    bn: Literal["recompute", "eval"] = "recompute",
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Surface | None:
    """The loss surface in the plane through the two models and the curve's bend, the curve drawn on it (Garipov
    et al. 2018, figure 1).

    The plane's axes are orthonormal in parameter space: ``x`` towards the other model, ``y`` towards the (middle)
    bend, orthogonal to ``x``, so distances read as in weight space; the problem's model is the origin. A Bezier curve
    with one bend lies in this plane; with more bends the curve is drawn projected onto it.

    Args:
        problem: the curve's first model (``t = 0``), its data and loss.
        curve: the :class:`Curve` of :func:`connect`, or its file.
        x: coordinates along the first axis (default: the curve's extent plus 20 %, ``points`` points).
        y: coordinates along the second (default: the curve's extent, widened to half the width of ``x``).
        points: grid points per axis of the default ranges.
        splits: as for :func:`~landscape.surface`.
        bn: ``"recompute"`` (BatchNorm statistics recomputed at every point, the default) or ``"eval"``.
        fast: as for :func:`~landscape.surface`.
        out: write the plane as a 2-D surface file (``directions="curve_plane"``; the curve's projection as its
            path), which ``plot`` and ``explore`` draw with the curve on it.
        resume: as for :func:`~landscape.surface`.
        overwrite: as for :func:`~landscape.surface`.
        progress: as for :func:`~landscape.surface`.
        log: as for :func:`~landscape.surface`.

    Returns:
        The 2-D :class:`~landscape.io.Surface`, ``extras["proj_xcoord"]``/``["proj_ycoord"]`` the curve.

    Raises:
        ValueError: a curve of another model, or one whose bend lies on the line (no plane).
    """
    if not isinstance(curve, Curve):
        curve = _curve_of(read_surface(curve, directions=True), problem)
    names = [n for n, _ in problem.model.named_parameters()]
    controls = [torch.cat([c[n].reshape(-1).double() for n in names]) for c in curve.controls]
    bend = controls[(len(controls) - 2) // 2]
    e1 = controls[-1] / controls[-1].norm()
    v = bend - (bend @ e1) * e1
    if float(v.norm()) < 1e-5 * float(bend.norm().clamp_min(1e-30)):  # float32 rounding of a bend on the line
        raise ValueError("the curve's bend lies on the straight line: there is no plane to draw (train the curve)")
    e2 = v / v.norm()
    ts = np.linspace(0.0, 1.0, 101)
    weights = torch.as_tensor(coefficients(cast(CurveKind, curve.attrs.get("curve", "bezier")), len(controls) - 1, ts))
    path = weights[:, 1:] @ torch.stack(controls)
    px, py = (path @ e1).numpy(), (path @ e2).numpy()
    xs = auto_range(px, points, 0.2) if x is None else coordinates(x, "x")
    if y is None:  # at least half as tall as wide: the basin around the curve, drawn on equal axes
        lo, hi = min(float(py.min()), 0.0), max(float(py.max()), 0.0)
        pad = max(0.2 * (hi - lo), (0.5 * float(np.ptp(xs)) - (hi - lo)) / 2)
        ys = np.linspace(lo - pad, hi + pad, points)
    else:
        ys = coordinates(y, "y")
    shapes = {n: p.shape for n, p in problem.model.named_parameters()}
    axes = [dict(zip(names, (c.float().split([int(np.prod(shapes[n])) for n in names])))) for c in (e1, e2)]
    axes = [{n: t.reshape(shapes[n]) for n, t in a.items()} for a in axes]
    attrs = {"directions": "curve_plane", "norm": "none", "curve": curve.attrs.get("curve", ""), "analysis": "plane"}
    return run_grid(
        problem, lambda: axes, xs, ys, attrs, GridEvaluation(splits, "weights", bn, None, None, fast),
        Output(out, resume, overwrite, progress, log), {"proj_xcoord": px, "proj_ycoord": py},
    )  # fmt: skip


def _curve_of(line: Surface, problem: Problem) -> Curve:
    """A curve file read back as a :class:`Curve` (its bends on the problem's model).

    Raises:
        ValueError: not a curve file.
    """
    if line.attrs.get("directions") != "curve" or not line.directions:
        raise ValueError(f"{line.path}: not a curve file of landscape.connect")
    with problem.session():
        start = {k: v.detach().cpu() for k, v in problem.model.named_parameters()}
    missing = [k for k in start if k not in line.directions[0]]
    if missing:
        raise ValueError(f"{line.path}: a curve of another model (it has no {missing[0]!r})")
    for d in line.directions:
        same_architecture(start, {k: d[k] for k in start})
    bends = [{k: start[k] + d[k] for k in start} for d in line.directions[:-1]]
    history = [float(x) for x in line.extras.get("train_loss_history", [])]
    t, values, heights, attrs, _ = _heights(line, None)
    return Curve(t, values, heights, attrs, line.path, bends=bends, history=history, controls=line.directions)


def _finished(out: str | Path, problem: Problem) -> Curve | None:
    """The curve a finished ``out`` holds (resuming it has nothing left to do), else None."""
    done, total = surface_progress(out)
    if not total or done < total:
        return None
    return _curve_of(read_surface(out, directions=True), problem)


def _displacement(start: dict[str, Tensor], end: dict[str, Tensor], control: dict[str, Tensor], at: float) -> dict:
    """A control point minus the first model, over the whole state: its parameters, and buffers (BatchNorm
    statistics) placed on the straight line at ``at``."""
    moved = {}
    for k, v in start.items():
        if not v.is_floating_point():
            moved[k] = torch.zeros_like(v).cpu()  # counters (num_batches_tracked) stay
            continue
        point = control[k].detach() if k in control else torch.lerp(v, end[k].to(v), at)
        moved[k] = (point - v).cpu()
    return moved


def _restore(
    path: Path | None,
    resume: bool,
    overwrite: bool,
    settings: dict,
    trainable: list[Tensor],
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[int, list[float]]:
    """(epochs done, their losses) from the training state a killed job left, restored into the bends and the
    optimizer; (0, []) without one."""
    if path is None or not path.exists():
        return 0, []
    if not resume:
        if not overwrite:  # a killed job's training: never thrown away unasked
            raise ValueError(
                f"{path} holds a curve's unfinished training: resume=True to go on, overwrite=True to start again"
            )
        path.unlink()
        return 0, []
    saved = torch.load(path, map_location="cpu", weights_only=True)
    diff = changed_options(saved["settings"], settings)
    if diff:
        raise ValueError(
            f"cannot resume {path}: it was made with {'; '.join(diff)}; use its options, or overwrite=True"
        )
    with torch.no_grad():
        torch._foreach_copy_(trainable, [t.to(p) for t, p in zip(saved["bends"], trainable)])
    opt.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    return int(saved["epoch"]), [float(x) for x in saved["history"]]


def _save(
    path: Path, epoch: int, settings: dict, history: list[float], trainable: list[Tensor], opt, generator
) -> None:
    state = {
        "epoch": epoch, "settings": settings, "history": history, "bends": [t.detach().cpu() for t in trainable],
        "optimizer": opt.state_dict(), "generator": generator.get_state(),
    }  # fmt: skip
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _attrs(heights: dict[str, float]) -> dict[str, float]:
    return {f"barrier_{split}": h for split, h in heights.items()}


def _record(path: Path, heights: dict[str, float]) -> None:
    """The barrier heights as attributes of the written line."""
    from .io.files import open_h5

    with open_h5(path, "r+") as f:
        f.attrs.update(_attrs(heights))


__all__ = ["Barrier", "Curve", "barrier", "connect", "curve_plane", "loss_barrier"]
