"""Loss surfaces of a :class:`~landscape.problem.Problem`: the loss on a 1D/2D grid ``w0 + a*d1 + b*d2``.

:func:`surface` (random, Hessian or given directions), :func:`interpolate` (towards other
weights) and :func:`trajectory` (the PCA plane of saved snapshots) return a
:class:`~landscape.io.Surface` and, with ``out=``, stream it to an HDF5 file. The model
is moved in place with foreach ops (directions and the origin live on the device once) and
restored exactly afterwards. Points are evaluated in rounds, each rank of a ``torchrun`` job
taking its share; rank 0 writes every round to the file and flushes, so a killed job
resumes with no finished point recomputed.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, cast, get_args

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage
from torch import Tensor
from tqdm import tqdm

from landscape._system.ranks import Ranks, join_group

from ._driver import GridJob, Output
from ._evaluation import recompute_bn_statistics
from ._folding import compiled_module, faster_module
from ._refine import refine as refine_grid
from .directions import (
    DIR_TYPES,
    IGNORES,
    NORMS,
    Direction,
    IgnoreMode,
    difference,
    output_axes,
    pca_directions,
    random_directions,
    target_tensors,
)
from .io import Surface, read_surface
from .io.files import sha256
from .io.results import ResultWriter
from .io.surface import create_surface, surface_attrs, value_names
from .limits import MAX_AXIS_POINTS, MAX_TRIALS, check_count
from .problem import Problem, weights_sha256
from .snapshots import load_state, snapshot_files

BNMode = Literal["eval", "recompute"]
BN_MODES: tuple[BNMode, ...] = get_args(BNMode)
RANGE = re.compile(r"^\s*(-?[\d.eE+-]+)\s*:\s*(-?[\d.eE+-]+)\s*:\s*(\d+)\s*$")
MAX_POINTS = 10_000_000  # a grid of more points is a typo, not a job
COMPILE_AFTER_S = 120.0  # compile=None: compile once the eager rest of a grid would take longer (compiling: 8-14 s)


def parse_range(text: str, flag: str = "--x") -> np.ndarray:
    """``"MIN:MAX:NUM"`` -> ``np.linspace(MIN, MAX, NUM)``."""
    m = RANGE.match(text)
    try:
        lo, hi, num = float(m.group(1)), float(m.group(2)), int(m.group(3))  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        raise ValueError(f"{flag} {text!r}: expected MIN:MAX:NUM, e.g. -1:1:51") from None
    if num < 1 or not (math.isfinite(lo) and math.isfinite(hi)) or (num > 1 and not lo < hi):
        raise ValueError(f"{flag} {text!r}: need MIN < MAX and NUM >= 1")
    check_count(f"{flag} {text!r}: NUM", num, MAX_AXIS_POINTS)
    return np.linspace(lo, hi, num)


def coordinates(values: Any, name: str) -> np.ndarray:
    """Grid coordinates from ``"MIN:MAX:NUM"`` or an array of finite numbers."""
    if isinstance(values, str):
        return parse_range(values, name)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected 'MIN:MAX:NUM' or a 1-D sequence of real numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of coordinates, got an array of shape {arr.shape}")
    if not len(arr) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: need at least one finite coordinate")
    check_count(f"{name}: the number of coordinates", len(arr), MAX_AXIS_POINTS)
    return arr


class Displacement:
    """Context manager moving a model's tensors to ``origin + sum_i c_i d_i`` in place.

    Moves the floating tensors of ``target_tensors(model, dir_type)`` (or only ``names``);
    on exit they are copied back from the saved origin, exactly. (Everything else an
    analysis may change, BatchNorm statistics and modes, :meth:`Problem.session` restores.)
    """

    def __init__(
        self, model: nn.Module, directions: list[Direction], dir_type: str = "weights", names: list[str] | None = None
    ) -> None:
        live = target_tensors(model, dir_type)
        missing = [n for d in directions for n in d if n not in live]
        if missing or any(set(d) != set(live) for d in directions):
            raise ValueError(
                f"directions do not match the model's {dir_type} "
                f"(e.g. {(missing or sorted(set(live) - set(directions[0])))[:3]})"
            )
        self.names = [n for n, t in live.items() if t.is_floating_point() and (names is None or n in names)]
        self.live = [live[n] for n in self.names]
        self.dirs = [[d[n].to(live[n].device, live[n].dtype) for n in self.names] for d in directions]

    def __enter__(self) -> Displacement:
        self.origin = [t.clone() for t in self.live]
        return self

    @torch.no_grad()
    def move(self, coords: tuple[float, ...]) -> None:
        torch._foreach_copy_(self.live, self.origin)
        for c, d in zip(coords, self.dirs):
            if c:
                torch._foreach_add_(self.live, d, alpha=float(c))

    @torch.no_grad()
    def offset(self, delta: list[Tensor]) -> None:
        """Move to ``origin + delta`` (``delta`` aligned with :attr:`live`)."""
        torch._foreach_copy_(self.live, self.origin)
        torch._foreach_add_(self.live, delta)

    @torch.no_grad()
    def __exit__(self, *exc) -> None:
        torch._foreach_copy_(self.live, self.origin)


def point_coords(k: int, xs: np.ndarray, ys: np.ndarray | None) -> tuple[float, ...]:
    """Flat index -> coordinates; 2-D grids are numbered y-major (``k = iy * nx + ix``)."""
    return (float(xs[k]),) if ys is None else (float(xs[k % len(xs)]), float(ys[k // len(xs)]))


def evaluate_point(
    problem: Problem,
    splits: list[str],
    bn: BNMode = "eval",
    bn_split: str | None = None,
    module: nn.Module | None = None,
) -> dict[str, float]:
    """``{f"{split}_{metric}": value}`` at the model's current weights."""
    if bn == "recompute":
        recompute_bn_statistics(problem.model, lambda: problem.forward_all(bn_split or splits[0]))
    return {f"{split}_{k}": v for split in splits for k, v in problem.evaluate(split, module).items()}


def fill_surface(
    problem: Problem,
    directions: list[Direction],
    writers: list,
    xs: np.ndarray,
    ys: np.ndarray | None,
    todo: list[int],
    splits: list[str],
    *,
    dir_type: str = "weights",
    bn: BNMode = "eval",
    bn_split: str | None = None,
    group: Ranks = Ranks(),
    round_size: int = 8,
    module: nn.Module | None = None,
    compile_after: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    path: np.ndarray | None = None,
) -> None:
    """Evaluate the grid points ``todo`` (flat indices) and hand every round to each of ``writers``.

    ``path`` (points x directions): the coefficients of the directions at each point, for a curve whose points
    are not the grid's coordinates (a Bezier curve in the span of its control points); default: the coordinates.

    ``module`` is the module actually called (e.g. ``torch.compile(model)``); it must share
    the model's tensors. Each round every rank evaluates up to ``round_size`` of its points
    (rank r takes ``todo[r::world]``); all ranks receive all points of the round. With
    ``compile_after`` (seconds), the rest of the grid runs through ``torch.compile`` once the
    first round shows that it would take longer than that in eager mode.
    """
    mine = todo[group.rank :: group.world]
    rounds = math.ceil(math.ceil(len(todo) / group.world) / round_size) if todo else 0
    bar = tqdm(total=len(todo), desc="surface", unit="pt", disable=not (progress and group.is_main))
    with problem.session(), Displacement(problem.model, directions, dir_type) as disp:
        for r in range(rounds):
            done = []
            tic = time.perf_counter()
            for k in mine[r * round_size : (r + 1) * round_size]:
                disp.move(point_coords(k, xs, ys) if path is None else tuple(map(float, path[k])))
                done.append((k, evaluate_point(problem, splits, bn, bn_split, module)))
            if compile_after is not None and r == 0 and rounds > 1:
                rest = (time.perf_counter() - tic) / max(len(done), 1) * (len(mine) - len(done))
                if group.agree(lambda: rest > compile_after):
                    faster = compiled_module(problem, module)
                    if log and group.is_main:
                        what = (
                            "torch.compile failed, staying eager" if faster is None else "compiled with torch.compile"
                        )
                        log(f"about {rest:.0f} s of eager evaluation left: {what}")
                    module = module if faster is None else faster
            gathered = [p for part in group.gather(done) for p in part]
            for writer in writers:
                writer.write(gathered)
            bar.update(len(gathered))
    bar.close()


def restrict(direction: Direction, problem: Problem) -> Direction:
    """Zero a direction outside the analysed parameters (and buffers, once only some parameters move)."""
    if problem.params_attr() == "all":
        return direction
    keep = set(problem.param_names)
    return {n: t if n in keep else torch.zeros_like(t) for n, t in direction.items()}


@dataclass(frozen=True)
class GridEvaluation:
    """How every point of a grid is evaluated: the keyword arguments :func:`surface`, :func:`interpolate` and
    :func:`trajectory` share.

    Attributes:
        splits: which of the problem's splits to evaluate (``None``: all).
        dir_type: ``"weights"`` (parameters) or ``"states"`` (also BatchNorm running statistics) move.
        bn: ``"eval"`` (the model's BatchNorm statistics) or ``"recompute"`` (recomputed at every point).
        bn_split: the split they are recomputed on (``None``: ``train`` if the problem has one, else its first).
        compile: evaluate through ``torch.compile`` (``None``: once compiling pays, ``False``: never).
        fast: evaluate the folded view of the model (:func:`landscape._folding.faster_module`).
    """

    splits: Sequence[str] | None = None
    dir_type: str = "weights"
    bn: BNMode = "eval"
    bn_split: str | None = None
    compile: bool | None = None
    fast: bool = True

    def check(self, problem: Problem) -> tuple[list[str], str]:
        """(the splits, the BatchNorm split) on ``problem``.

        Raises:
            ValueError: a split the problem lacks, or an unknown ``bn`` or ``dir_type``.
        """
        splits = list(self.splits or problem.splits)
        unknown = [s for s in splits if s not in problem.splits]
        if unknown:
            raise ValueError(f"no split {unknown[0]!r} in the problem (it has {', '.join(problem.splits)})")
        if self.bn not in BN_MODES:
            raise ValueError(f"unknown bn mode {self.bn!r}; expected one of {BN_MODES}")
        if self.dir_type not in DIR_TYPES:
            raise ValueError(f"unknown dir_type {self.dir_type!r}; expected one of {DIR_TYPES}")
        return splits, self.bn_split or ("train" if "train" in problem.splits else splits[0])

    def attrs(self, problem: Problem, attrs: dict) -> dict:
        """A grid file's attributes: the problem's provenance, how it was evaluated, then ``attrs``."""
        return {
            **problem.file_attrs(),
            "bn": self.bn,
            "dir_type": self.dir_type,
            "params": problem.params_attr(),
            **attrs,
        }


def run_grid(
    problem: Problem,
    make_directions: Callable[[], list[Direction]],
    xs: np.ndarray,
    ys: np.ndarray | None,
    attrs: dict,
    how: GridEvaluation,
    output: Output,
    extras: dict[str, np.ndarray] | None = None,
    path: np.ndarray | None = None,
) -> Surface | None:
    """Evaluate a grid around the problem's weights; the shared body of :func:`surface` and friends (``path``:
    as for :func:`fill_surface`)."""
    splits, bn_split = how.check(problem)
    if (len(xs) * (1 if ys is None else len(ys))) > MAX_POINTS:
        raise ValueError(f"a grid of {len(xs)} x {len(ys) if ys is not None else 1} points is more than {MAX_POINTS:,}")
    shape = (len(xs),) if ys is None else (len(ys), len(xs))
    attrs = how.attrs(problem, attrs)
    names = value_names(splits, ["loss", *problem.metrics])
    ranks = join_group(problem.device.type)
    job = GridJob("surface", shape, {n: () for n in names}, surface_attrs(xs, ys, splits, attrs), output, ranks)
    make_directions = nonzero(make_directions)
    wanted = {**attrs, "kind": "surface", "index_order": "x" if ys is None else "yx", "values": names}
    made: list[list[Direction]] = []

    def create() -> ResultWriter:
        made.append(make_directions())
        return create_surface(output.out, xs, ys, splits, made[0], attrs, extras, names)  # type: ignore[arg-type]

    def same_grid(w: ResultWriter) -> bool:
        old_y = w.dataset("ycoordinates")
        return (
            np.array_equal(w.dataset("xcoordinates"), xs)  # type: ignore[arg-type]
            and (ys is None) == (old_y is None)
            and (ys is None or np.array_equal(old_y, ys))  # type: ignore[arg-type]
        )

    def prepare() -> tuple[list[Direction], list[int]]:
        """Rank 0: (the directions: new, or the resumed file's; the flat indices left to compute)."""
        todo = job.open(create, same_grid, wanted)
        if output.out is None:
            return make_directions(), todo
        return (made[0] if job.created else job.file.directions()), todo  # type: ignore[union-attr]

    with problem.session(), job:
        directions, todo = ranks.agree(prepare)  # rank 0 owns the file; the ranks split the points
        module = faster_module(problem) if how.fast else None
        if how.compile:
            module = compiled_module(problem, module)
            if module is None:
                raise ValueError(
                    "torch.compile failed on this model (on CPU inductor needs a C++ compiler); run with compile=False"
                )
        fill_surface(
            problem,
            directions,
            [job],
            xs,
            ys,
            todo,
            splits,
            dir_type=how.dir_type,
            bn=how.bn,
            bn_split=bn_split,
            group=ranks,
            module=module,
            compile_after=COMPILE_AFTER_S if how.compile is None else None,
            progress=output.progress,
            log=output.log,
            path=path,
        )
        job.finish("grid points")
    if output.out is not None:
        if job.written is None:
            return None
        written = read_surface(job.written)
        written.directions = directions  # the axes in memory: the same the file holds
        return written
    memory = job.memory
    assert memory is not None
    values = {n: np.where(memory.computed, v, np.nan) for n, v in memory.arrays.items()}
    return Surface("", xs, ys, values, memory.computed, memory.attrs, "landscape", extras or {}, directions)


def nonzero(make_directions: Callable[[], list[Direction]]) -> Callable[[], list[Direction]]:
    """``make_directions``, refusing a direction that is zero on every tensor (only biases analysed with
    ``ignore="biasbn"``, a zero direction passed in): every point of its axis would be the centre."""

    def make() -> list[Direction]:
        dirs = make_directions()
        for i, d in enumerate(dirs, 1):
            if not any(bool(t.ne(0).any()) for t in d.values() if t.is_floating_point()):
                raise ValueError(
                    f"direction {i} is zero on every analysed tensor (a zero direction, or only 1-D tensors with "
                    "ignore='biasbn'): the surface would be flat"
                )
        return dirs

    return make


def _grid_args(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    return coordinates(x, "x"), (None if y is None else coordinates(y, "y"))


def surface(
    problem: Problem,
    x: Any,
    y: Any = None,
    *,
    directions: str | Sequence[Direction] = "random",
    hessian: Any = None,
    norm: str = "filter",
    ignore: str = "biasbn",
    seed: int = 0,
    dir_type: str = "weights",
    orthogonal: bool = False,
    splits: Sequence[str] | None = None,
    bn: BNMode = "eval",
    bn_split: str | None = None,
    compile: bool | None = None,
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
    direction_seeds: int = 1,
    basin_rise: float = 0.5,
    refine: float | None = None,
    bootstrap: int | None = None,
) -> Surface | None:
    """Loss (and metrics) of every split on the grid ``w0 + x*d1 (+ y*d2)`` around the problem's weights.

    Args:
        problem: the model, data and loss (its weights are the origin and are restored afterwards).
        x: coordinates along the first direction (an array, or ``"MIN:MAX:NUM"``).
        y: coordinates along the second (``None``: a 1-D slice).
        directions: ``"random"`` (Gaussian from a generator seeded with ``seed``, normalized by ``norm`` and
            ``ignore`` as Li et al. 2018), ``"hessian"`` (the top eigenvectors, unit norm, from ``hessian`` or
            computed), or the directions themselves (dicts of tensors keyed like
            ``target_tensors(model, dir_type)``; missing names are zero).
        hessian: with ``directions="hessian"``, a :class:`~landscape.Hessian` or its file to take the
            eigenvectors from (``None``: computed on the ``train`` split).
        norm: how random directions are scaled: ``"filter"`` (each filter to the norm of the model's filter),
            ``"layer"`` (each tensor), ``"model"`` (the whole direction) or ``"none"``.
        ignore: ``"biasbn"`` zeroes random directions on 1-D tensors (biases, BatchNorm); ``"none"`` keeps them.
        seed: the random directions' seed.
        dir_type: ``"weights"`` (parameters) or ``"states"`` (also BatchNorm running statistics) move.
        orthogonal: make the second random direction orthogonal to the first.
        splits: which of the problem's splits to evaluate (``None``: all).
        bn: ``"eval"`` (the model's BatchNorm statistics) or ``"recompute"`` (recomputed on ``bn_split`` at
            every point).
        bn_split: the split BatchNorm statistics are recomputed on (``None``: ``train`` if the problem has one,
            else its first).
        compile: evaluate through ``torch.compile`` (same numbers to ~3e-7); ``None``: once the first round of
            points shows the rest would take over 2 minutes eager (where compiling pays); ``False``: never.
        fast: evaluate a traced view of the model with eval BatchNorm folded into the convolutions
            (channels-last on CPU; same numbers to ~1e-6); ``False`` runs the model as written.
        out: the HDF5 file to write as the work goes (``None``: the result stays in memory).
        resume: finish the file a killed job left at ``out`` (its settings must match; nothing finished is
            recomputed).
        overwrite: replace an earlier result of the same kind at ``out``.
        progress: show a progress bar (on rank 0 of a ``torchrun`` job).
        log: called with one-line messages (resuming, non-finite points); ``None``: silent.
        attrs: extra attributes stored with the result.
        direction_seeds: evaluate the grid along this many independent pairs of random directions (seeds ``seed``,
            ``seed + 1``, ...): the result holds each point's mean over them in ``values`` and the standard deviation
            in ``spread`` (stored as ``{value}_std``), and the basin width's mean and std over them (each pair's own
            surface kept in ``.{stem}.seeds/`` beside ``out``, resumable on its own). One pair of random directions
            is one sample: a basin that looks flat along it may not be along the next.
        basin_rise: with ``direction_seeds``: the basin is where the loss stays within this much of the centre's
            (the region around the centre, connected to it; :func:`basin_width`); its width's mean and std over
            the seeds are stored per split (``attrs["basin_width_train"]``, ``attrs["basin_width_std_train"]``).
        refine: adaptive refinement to this tolerance in log10 of the first split's loss (``0.05``: 12 % of the
            loss, under half a contour level of a log-coloured figure): a coarse grid (every 8th point), then each
            cell's centre and edge middles; where one of them differs from the interpolation of the cell's corners
            by more than ``refine`` the cell is split and tested again, elsewhere its points are interpolated
            (log-linearly for losses). The file marks the points evaluated (``evaluated``) and counts them
            (``attrs["evaluations"]``). Not resumable (a refined grid is meant to be cheap); ``None``: every point.
        bootstrap: cut each split into this many blocks (a split given as a pair of tensors) and evaluate each
            block's surface: ``values`` are the whole split's, ``spread`` (stored as ``{value}_std``) each point's
            bootstrap standard error over the blocks resampled with replacement (2,000 times): whether the
            ``samples`` a surface averages over are enough shows as the width of its band. Not resumable.

    Returns:
        The :class:`~landscape.io.Surface` (``.values["train_loss"][i, j]`` at ``(x[j], y[i])``) with its
        directions; under ``torchrun`` with ``out=``, ranks other than 0 get ``None``.

    Raises:
        ValueError: a bad coordinate range, split, mode or direction (zero, of another shape, naming a tensor the
            model lacks), a grid beyond :mod:`landscape.limits`, an output that exists (without ``resume`` or
            ``overwrite``), that may not be replaced, or whose settings differ from this job's (``resume``).
    """
    xs, ys = _grid_args(x, y)
    count = 1 if ys is None else 2
    check_count("direction_seeds", direction_seeds, MAX_TRIALS, least=1)
    if not basin_rise > 0:
        raise ValueError(f"basin_rise must be > 0, got {basin_rise}")
    if sum([direction_seeds > 1, refine is not None, bootstrap is not None]) > 1:
        raise ValueError("direction_seeds, refine and bootstrap each compute the grid their own way: choose one")
    if bootstrap is not None:
        check_count("bootstrap", bootstrap, MAX_TRIALS, least=2)
        if (isinstance(directions, str) and directions == "hessian") or bn == "recompute":
            raise ValueError(
                "bootstrap evaluates each block of the data along the same directions and BatchNorm statistics: "
                "not with directions='hessian' or bn='recompute'"
            )
        return _bootstrapped(
            problem, xs, ys, bootstrap, seed=seed, out=out, overwrite=overwrite,
            kwargs=dict(directions=directions, hessian=hessian, norm=norm, ignore=ignore, dir_type=dir_type,
                        orthogonal=orthogonal, splits=splits, bn=bn, bn_split=bn_split, compile=compile, fast=fast,
                        progress=progress, log=log, attrs=attrs),
        )  # fmt: skip
    if direction_seeds > 1:
        if not (isinstance(directions, str) and directions == "random"):
            raise ValueError("direction_seeds draws several pairs of random directions: use directions='random'")
        return _over_seeds(
            problem, xs, ys, direction_seeds, basin_rise, seed=seed, out=out, resume=resume, overwrite=overwrite,
            kwargs=dict(norm=norm, ignore=ignore, dir_type=dir_type, orthogonal=orthogonal, splits=splits, bn=bn,
                        bn_split=bn_split, compile=compile, fast=fast, progress=progress, log=log, attrs=attrs),
        )  # fmt: skip
    if norm not in NORMS or ignore not in IGNORES:
        raise ValueError(f"norm must be one of {NORMS} and ignore one of {IGNORES}")
    if refine is not None and not refine > 0:
        raise ValueError(f"refine must be a tolerance > 0, got {refine}")
    if isinstance(directions, str) and directions == "random":

        def make() -> list[Direction]:
            dirs = random_directions(
                target_tensors(problem.model, dir_type),
                count=count,
                seed=seed,
                norm=norm,
                ignore=ignore,
                orthogonal=orthogonal,
                axes=output_axes(problem.model),
            )
            return [restrict(d, problem) for d in dirs]

        meta = {"directions": "random", "norm": norm, "ignore": ignore, "seed": seed, "orthogonal": orthogonal}
    elif isinstance(directions, str) and directions == "hessian":
        if dir_type != "weights":
            raise ValueError("Hessian directions move parameters only: use dir_type='weights'")
        from .curvature import hessian_directions

        def make() -> list[Direction]:
            return hessian_directions(problem, count, hessian, seed=seed)

        meta = {
            "directions": "hessian",
            "norm": "none",
            "ignore": "none",
            "seed": seed,
            "hessian_file": str(hessian) if isinstance(hessian, (str, Path)) else "",
        }
    elif isinstance(directions, str):
        raise ValueError(f"directions must be 'random', 'hessian' or a list of direction dicts, got {directions!r}")
    else:
        given = list(directions)
        if len(given) != count:
            raise ValueError(f"a {count}-D surface needs {count} directions, got {len(given)}")

        def make() -> list[Direction]:
            return [complete(d, problem, dir_type) for d in given]

        meta = {"directions": "custom", "norm": "none", "ignore": "none", "seed": -1}
    how = GridEvaluation(splits, dir_type, bn, bn_split, compile, fast)
    if refine is not None:
        return _refined(problem, make, xs, ys, {**meta, **(attrs or {})}, how, refine, out, overwrite, progress)
    result = run_grid(
        problem,
        make,
        xs,
        ys,
        {**meta, **(attrs or {})},
        how,
        Output(out, resume, overwrite, progress, log),
    )
    return result


class _Collect:
    """A writer for :func:`fill_surface` that keeps the points it is handed."""

    def __init__(self) -> None:
        self.points: dict[int, dict[str, float]] = {}

    def write(self, points: list[tuple[int, dict[str, float]]]) -> None:
        self.points.update(points)


def _refined(
    problem: Problem,
    make: Callable[[], list[Direction]],
    xs: np.ndarray,
    ys: np.ndarray | None,
    attrs: dict,
    how: GridEvaluation,
    tol: float,
    out: str | Path | None,
    overwrite: bool,
    progress: bool,
) -> Surface:
    """:func:`surface` with ``refine``: the points :func:`landscape._refine.refine` asks for, evaluated in rounds."""
    if out is not None and Path(out).exists() and not overwrite:
        raise ValueError(f"{out} exists: pass overwrite=True to replace it (a refined surface is not resumable)")
    splits, bn_split = how.check(problem)
    directions = nonzero(make)()
    key = f"{splits[0]}_loss"
    count = 0

    def evaluate(points: list[tuple[int, int]]) -> list[dict[str, float]]:
        nonlocal count
        coords = np.array([(xs[j],) if ys is None else (xs[j], ys[i]) for i, j in points])
        sink = _Collect()
        fill_surface(problem, directions, [sink], xs, ys, list(range(len(points))), splits, dir_type=how.dir_type,
                     bn=how.bn, bn_split=bn_split, module=module, progress=False, path=coords)  # fmt: skip
        count += len(points)
        bar.update(len(points))
        return [_logged(sink.points[k]) for k in range(len(points))]

    with problem.session(), tqdm(desc="surface (refined)", unit="pt", disable=not progress) as bar:
        module = faster_module(problem) if how.fast else None
        logged, evaluated = refine_grid(len(xs), 1 if ys is None else len(ys), evaluate, key, tol)
    values = {n: (10**v if n.endswith("_loss") else v) for n, v in logged.items()}
    if ys is None:
        values, evaluated = {n: v[0] for n, v in values.items()}, evaluated[0]
    computed = np.ones(evaluated.shape, bool)
    full = how.attrs(problem, {**attrs, "refine": tol, "evaluations": count})
    _write_whole(out, xs, ys, splits, directions, full, {"evaluated": evaluated.astype(np.uint8)}, values, computed)
    result = Surface(str(out or ""), xs, ys, values, computed, surface_attrs(xs, ys, splits, full), "landscape",
                     {"evaluated": evaluated}, directions)  # fmt: skip
    return result


def _logged(values: dict[str, float]) -> dict[str, float]:
    """Losses in log10 (refinement compares and interpolates them so: log-linear between evaluated points)."""
    return {n: (math.log10(max(v, 1e-300)) if n.endswith("_loss") else v) for n, v in values.items()}


def basin_width(xs: np.ndarray, ys: np.ndarray | None, loss: np.ndarray, rise: float) -> float:
    """The width of the basin around the grid point nearest the origin: the points connected to it (4-neighbours)
    whose loss is within ``rise`` of its loss; along a 1-D slice the span of their coordinates, on a 2-D grid the
    diameter of the disc of their area (cells of ``dx * dy``). NaN where the centre's loss is not finite."""
    centre = (int(np.argmin(np.abs(xs))),) if ys is None else (int(np.argmin(np.abs(ys))), int(np.argmin(np.abs(xs))))
    if not np.isfinite(loss[centre]):
        return float("nan")
    inside = np.isfinite(loss) & (loss <= loss[centre] + rise)
    labels, _ = ndimage.label(inside)
    region = labels == labels[centre]
    if ys is None:
        hit = xs[region]
        return float(hit.max() - hit.min())
    cell = (np.ptp(xs) / max(len(xs) - 1, 1)) * (np.ptp(ys) / max(len(ys) - 1, 1))
    return float(2 * np.sqrt(region.sum() * cell / np.pi))


def basin_widths(s: Surface, rise: float) -> dict[str, float]:
    """:func:`basin_width` of each split's loss."""
    return {
        split: basin_width(s.xcoordinates, s.ycoordinates, s.values[f"{split}_loss"], rise)
        for split in s.splits
        if f"{split}_loss" in s.values
    }


def _over_seeds(
    problem: Problem,
    xs: np.ndarray,
    ys: np.ndarray | None,
    k: int,
    rise: float,
    *,
    seed: int,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    kwargs: dict,
) -> Surface | None:
    """:func:`surface` over ``k`` seeds of random directions: each seed's surface (in ``.{stem}.seeds/`` beside
    ``out``), then their mean and std per point written to ``out``."""
    if out is not None and Path(out).exists() and not (resume or overwrite):
        raise ValueError(f"{out} exists: pass resume=True to finish it or overwrite=True to replace it")
    folder = None if out is None else Path(out).with_name(f".{Path(out).stem}.seeds")
    parts = []
    for i in range(k):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        part = surface(
            problem,
            xs,
            ys,
            seed=seed + i,
            out=None if folder is None else folder / f"seed{seed + i}.h5",
            resume=resume,
            overwrite=overwrite,
            **kwargs,
        )
        if part is None:  # a rank other than 0 of a torchrun job: rank 0 writes
            return None
        parts.append(part)
    names = list(parts[0].values)
    stacked = {n: np.stack([p.values[n] for p in parts]) for n in names}
    mean = {n: v.mean(0) for n, v in stacked.items()}
    std = {n: v.std(0) for n, v in stacked.items()}
    widths = np.array([list(basin_widths(p, rise).values()) for p in parts])  # (seed, split)
    attrs = {
        **_settings(parts[0]),
        "seed": seed,
        "direction_seeds": k,
        "basin_rise": rise,
        **{f"basin_width_{split}": float(widths[:, i].mean()) for i, split in enumerate(basin_widths(parts[0], rise))},
        **{f"basin_width_std_{sp}": float(widths[:, i].std()) for i, sp in enumerate(basin_widths(parts[0], rise))},
    }
    computed = np.logical_and.reduce([p.computed for p in parts])
    splits = list(parts[0].splits)
    extras = {f"{n}_std": std[n] for n in names}
    _write_whole(out, xs, ys, splits, parts[0].directions or [], attrs, extras, mean, computed)
    return Surface(str(out or ""), xs, ys, mean, computed, surface_attrs(xs, ys, splits, attrs), "landscape", {},
                   parts[0].directions, std)  # fmt: skip


def _settings(part: Surface) -> dict:
    """A part surface's attributes that a combined file keeps (not those its writer sets afresh)."""
    fresh = ("kind", "grid_shape", "values", "complete", "created")
    return {a: v for a, v in part.attrs.items() if a not in fresh}


def _write_whole(
    out: str | Path | None,
    xs: np.ndarray,
    ys: np.ndarray | None,
    splits: list[str],
    directions: list[Direction],
    attrs: dict,
    extras: dict[str, np.ndarray],
    values: dict[str, np.ndarray],
    computed: np.ndarray,
) -> None:
    """A surface computed as a whole (over seeds, blocks, or refined) to ``out``: created atomically, then its
    points (``None``: nothing to write)."""
    if out is None:
        return
    writer = create_surface(out, xs, ys, splits, directions, attrs, extras, list(values))
    flat = {n: v.ravel() for n, v in values.items()}
    writer.write([(int(j), {n: flat[n][j] for n in values}) for j in np.flatnonzero(computed.ravel())])
    writer.finish()
    writer.close()


def _bootstrapped(
    problem: Problem,
    xs: np.ndarray,
    ys: np.ndarray | None,
    blocks: int,
    *,
    seed: int,
    out: str | Path | None,
    overwrite: bool,
    kwargs: dict,
    resamples: int = 2000,
) -> Surface | None:
    """:func:`surface` with ``bootstrap``: each split cut into ``blocks`` blocks, every block's surface along the
    same directions, the points' means (the whole split's values) and their bootstrap standard errors over
    blocks resampled with replacement."""
    if out is not None and Path(out).exists() and not overwrite:
        raise ValueError(f"{out} exists: pass overwrite=True to replace it")
    splits = list(kwargs.pop("splits") or problem.splits)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, blocks, size=(resamples, blocks))
    counts = np.stack([np.bincount(row, minlength=blocks) for row in picks])  # (resample, block) draws
    mean: dict[str, np.ndarray] = {}
    stderr: dict[str, np.ndarray] = {}
    first: Surface | None = None
    for split in splits:
        data = problem.splits[split].tensors
        size = -(-len(data) // blocks) if data is not None else 1
        pieces = problem.blocks(split, size)
        if len(pieces) != blocks:
            raise ValueError(f"bootstrap={blocks}: the split {split!r} cannot be cut into {blocks} blocks")
        parts = [cast(Surface, surface(b, xs, ys, seed=seed, splits=[split], **kwargs)) for b in pieces]  # in memory
        first = first or parts[0]
        weights = np.array([b.splits[split].total for b in pieces])
        for name in parts[0].values:
            stack = np.stack([p.values[name].ravel() for p in parts])  # (block, point)
            mean[name] = (weights @ stack / weights.sum()).reshape(parts[0].values[name].shape)
            drawn = (counts * weights) @ stack / (counts @ weights)[:, None]  # (resample, point)
            stderr[name] = drawn.std(0).reshape(mean[name].shape)
    assert first is not None
    attrs = {
        **_settings(first),
        **problem.file_attrs(),
        "bootstrap": blocks,
        "bootstrap_resamples": resamples,
    }
    computed = np.ones(first.computed.shape, bool)
    extras = {f"{n}_std": v for n, v in stderr.items()}
    _write_whole(out, xs, ys, splits, first.directions or [], attrs, extras, mean, computed)
    return Surface(str(out or ""), xs, ys, mean, computed, surface_attrs(xs, ys, splits, attrs), "landscape", {},
                   first.directions, stderr)  # fmt: skip


def complete(direction: Direction, problem: Problem, dir_type: str) -> Direction:
    """A user's direction on every tensor the grid moves (zeros where it names none), on the CPU."""
    live = target_tensors(problem.model, dir_type)
    unknown = [n for n in direction if n not in live]
    if unknown:
        raise ValueError(f"direction names {unknown[0]!r}, which is not in the model's {dir_type}")
    bad = [n for n, t in direction.items() if tuple(t.shape) != tuple(live[n].shape)]
    if bad:
        raise ValueError(
            f"direction {bad[0]!r} has shape {tuple(direction[bad[0]].shape)}, the model {tuple(live[bad[0]].shape)}"
        )
    return restrict(
        {
            n: (
                torch.as_tensor(direction[n]).detach().cpu().to(t.dtype)
                if n in direction
                else torch.zeros_like(t, device="cpu")
            )
            for n, t in live.items()
        },
        problem,
    )


def interpolate(
    problem: Problem,
    other: Any,
    x: Any,
    *,
    dir_type: str = "states",
    splits: Sequence[str] | None = None,
    bn: BNMode = "eval",
    bn_split: str | None = None,
    compile: bool | None = None,
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
) -> Surface | None:
    """The loss along the line from the problem's weights (x=0) to ``other``'s (x=1) and beyond.

    Args:
        problem: the model, data and loss; its weights are x=0.
        other: a model of the same architecture, its state dict, or a file of either kind; the direction is
            ``other - w0``, not normalized.
        x: coordinates along the line (an array, or ``"MIN:MAX:NUM"``).
        dir_type: ``"states"`` (parameters and BatchNorm running statistics, the default) or ``"weights"``.
        splits: as for :func:`surface`.
        bn: as for :func:`surface`.
        bn_split: as for :func:`surface`.
        compile: as for :func:`surface`.
        fast: as for :func:`surface`.
        out: as for :func:`surface`.
        resume: as for :func:`surface`.
        overwrite: as for :func:`surface`.
        progress: as for :func:`surface`.
        log: as for :func:`surface`.
        attrs: as for :func:`surface`.

    Returns:
        The 1-D :class:`~landscape.io.Surface` (ranks other than 0 of a ``torchrun`` job with ``out=``: None).

    Raises:
        ValueError: ``other`` lacks a tensor of the model or has another shape, or a bad argument (as for
            :func:`surface`).
    """
    xs = coordinates(x, "x")
    state = load_state(other)

    def make() -> list[Direction]:
        here = {k: v.detach().cpu() for k, v in target_tensors(problem.model, dir_type).items()}
        missing = [k for k in here if k not in state]
        if missing:
            raise ValueError(f"the other model has no {missing[0]!r}: not the same architecture")
        return [restrict(difference(here, {k: state[k].detach().cpu() for k in here}), problem)]

    digest = sha256(other) if isinstance(other, (str, Path)) else weights_sha256(state)
    meta = {
        "directions": "interpolation",
        "checkpoint_b": str(other) if isinstance(other, (str, Path)) else "(in memory)",
        "checkpoint_b_sha256": digest,
        "norm": "none",
        "ignore": "none",
        "seed": -1,
    }
    return run_grid(
        problem,
        make,
        xs,
        None,
        {**meta, **(attrs or {})},
        GridEvaluation(splits, dir_type, bn, bn_split, compile, fast),
        Output(out, resume, overwrite, progress, log),
    )


def auto_range(values: np.ndarray, num: int = 21, margin: float = 0.25) -> np.ndarray:
    """``num`` points covering ``values`` and 0, with a margin of ``margin`` times the span on each side."""
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = max(hi - lo, 1e-6)
    return np.linspace(lo - margin * span, hi + margin * span, num)


def trajectory(
    problem: Problem,
    snapshots: Any,
    x: Any = None,
    y: Any = None,
    *,
    ignore: str = "biasbn",
    splits: Sequence[str] | None = None,
    bn: BNMode = "eval",
    bn_split: str | None = None,
    compile: bool | None = None,
    fast: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    attrs: dict | None = None,
) -> Surface | None:
    """A 2-D surface around the problem's weights (the end of training) on the top-2 PCA directions of
    ``theta_t - theta_final`` over ``snapshots`` (Li et al. Sec. 7), with the projected path.

    Args:
        problem: the model, data and loss; its weights are the centre (the end of training).
        snapshots: a folder of ``.pt`` files (see :func:`~landscape.save_snapshot`; our run's
            ``checkpoints/`` works too), or a list of state dicts, models or files, in training order; at
            least 3 that are not collinear.
        x: coordinates along the first principal direction (default: the path's extent plus 25 %, 21 points).
        y: coordinates along the second (default as for ``x``).
        ignore: ``"biasbn"`` leaves 1-D tensors (biases, BatchNorm) out of the PCA, ``"none"`` keeps them.
        splits: as for :func:`surface`.
        bn: as for :func:`surface`.
        bn_split: as for :func:`surface`.
        compile: as for :func:`surface`.
        fast: as for :func:`surface`.
        out: as for :func:`surface`.
        resume: as for :func:`surface`.
        overwrite: as for :func:`surface`.
        progress: as for :func:`surface`.
        log: as for :func:`surface`.
        attrs: as for :func:`surface`.

    Returns:
        The 2-D :class:`~landscape.io.Surface`, its ``extras`` holding the projected path (``proj_xcoord``,
        ``proj_ycoord``) and ``explained_variance_ratio_``.

    Raises:
        ValueError: fewer than 3 snapshots, snapshots that are identical or collinear, a snapshot that is not
            the model's state dict, or a bad argument (as for :func:`surface`).
    """
    items = snapshot_files(snapshots) if isinstance(snapshots, (str, Path)) else list(snapshots)
    if len(items) < 2:
        raise ValueError(f"the PCA plane of a trajectory needs at least 3 snapshots, got {len(items)}")
    with problem.session():
        center = {n: t.detach().cpu() for n, t in target_tensors(problem.model, "weights").items()}
    path = []
    for item in items:
        state = load_state(item)
        missing = [n for n in center if n not in state]
        if missing:
            raise ValueError(f"a snapshot has no {missing[0]!r}: not the model's state dict")
        path.append({n: state[n].detach().cpu().to(center[n].dtype) for n in center})
    keep = set(problem.param_names)
    dirs, ratio, coords = pca_directions(
        [{n: (t if n in keep else center[n]) for n, t in p.items()} for p in path], center, cast(IgnoreMode, ignore)
    )
    xs = auto_range(coords[:, 0].numpy()) if x is None else coordinates(x, "x")
    ys = auto_range(coords[:, 1].numpy()) if y is None else coordinates(y, "y")
    extras = {
        "proj_xcoord": coords[:, 0].numpy(),
        "proj_ycoord": coords[:, 1].numpy(),
        "explained_variance_ratio_": ratio.numpy(),
    }
    meta = {"directions": "pca", "norm": "none", "ignore": ignore, "seed": -1, "snapshots": len(items)}
    return run_grid(
        problem,
        lambda: dirs,
        xs,
        ys,
        {**meta, **(attrs or {})},
        GridEvaluation(splits, "weights", bn, bn_split, compile, fast),
        Output(out, resume, overwrite, progress, log),
        extras,
    )


__all__ = ["surface", "interpolate", "trajectory", "GridEvaluation"]
