"""Loss surfaces: evaluate a model on a 1D/2D grid ``w0 + a*d1 + b*d2``, streamed to HDF5.

The caller's model is moved in place with foreach ops (directions and the origin live on
the device once) and restored exactly afterwards. Points are evaluated in rounds, each
rank of a ``torchrun`` job taking its share; rank 0 writes every round to the file and
flushes, so a killed job resumes with no finished point recomputed.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from tqdm import tqdm

from .directions import Direction, target_tensors
from .evaluation import EvalSet, loss_and_accuracy, recompute_bn_statistics
from .parallel import Group
from .store import ResultWriter, create_surface, open_results, value_names

BN_MODES = ("eval", "recompute")
RANGE = re.compile(r"^\s*(-?[\d.eE+-]+)\s*:\s*(-?[\d.eE+-]+)\s*:\s*(\d+)\s*$")


def parse_range(text: str, flag: str = "--x") -> np.ndarray:
    """``"MIN:MAX:NUM"`` -> ``np.linspace(MIN, MAX, NUM)``."""
    m = RANGE.match(text)
    try:
        lo, hi, num = float(m.group(1)), float(m.group(2)), int(m.group(3))  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        raise ValueError(f"{flag} {text!r}: expected MIN:MAX:NUM, e.g. -1:1:51") from None
    if num < 1 or not (math.isfinite(lo) and math.isfinite(hi)) or (num > 1 and not lo < hi):
        raise ValueError(f"{flag} {text!r}: need MIN < MAX and NUM >= 1")
    return np.linspace(lo, hi, num)


class Displacement:
    """Context manager moving a model's tensors to ``origin + sum_i c_i d_i`` in place.

    On exit every tensor of the ``state_dict`` (parameters and buffers, so recomputed
    BatchNorm statistics too) and the train/eval mode are restored exactly.
    """

    def __init__(self, model: nn.Module, directions: list[Direction], dir_type: str = "weights") -> None:
        self.model = model
        live = target_tensors(model, dir_type)
        missing = [n for d in directions for n in d if n not in live]
        if missing or any(set(d) != set(live) for d in directions):
            raise ValueError(f"directions do not match the model's {dir_type} (e.g. {(missing or sorted(set(live) - set(directions[0])))[:3]})")
        names = [n for n, t in live.items() if t.is_floating_point()]
        self.names = names
        self.live = [live[n] for n in names]
        self.dirs = [[d[n].to(live[n].device, live[n].dtype) for n in names] for d in directions]

    def __enter__(self) -> "Displacement":
        self.saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.origin = [t.clone() for t in self.live]
        self.was_training = self.model.training
        self.model.eval()
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
        state = self.model.state_dict()
        for k, v in self.saved.items():
            state[k].copy_(v)
        self.model.train(self.was_training)


def point_coords(k: int, xs: np.ndarray, ys: np.ndarray | None) -> tuple[float, ...]:
    """Flat index -> coordinates; 2-D grids are numbered y-major (``k = iy * nx + ix``)."""
    return (float(xs[k]),) if ys is None else (float(xs[k % len(xs)]), float(ys[k // len(xs)]))


def evaluate_point(model: nn.Module, evalsets: dict[str, EvalSet], bn: str, bn_data: EvalSet | None) -> dict[str, float]:
    if bn == "recompute":
        recompute_bn_statistics(model, bn_data)
        model.eval()
    out = {}
    for split, data in evalsets.items():
        out[f"{split}_loss"], out[f"{split}_acc"] = loss_and_accuracy(model, data)
    return out


def fill_surface(model: nn.Module, directions: list[Direction], writer: ResultWriter | None, xs: np.ndarray,
                 ys: np.ndarray | None, todo: list[int], evalsets: dict[str, EvalSet], *, dir_type: str = "weights",
                 bn: str = "eval", bn_data: EvalSet | None = None, group: Group = Group(), round_size: int = 8,
                 forward: nn.Module | None = None, progress: bool = True) -> None:
    """Evaluate the grid points ``todo`` (flat indices) and hand them to ``writer`` (rank 0).

    ``forward`` is the module actually called (e.g. ``torch.compile(model)``); it must
    share ``model``'s tensors. Each round every rank evaluates up to ``round_size`` of its
    points (rank r takes ``todo[r::world]``), rank 0 gathers and writes them.
    """
    if bn not in BN_MODES:
        raise ValueError(f"unknown bn mode {bn!r}; expected one of {BN_MODES}")
    mine = todo[group.rank::group.world]
    rounds = math.ceil(math.ceil(len(todo) / group.world) / round_size) if todo else 0
    bar = tqdm(total=len(todo), desc="surface", unit="pt", disable=not (progress and group.is_main))
    with Displacement(model, directions, dir_type) as disp:
        for r in range(rounds):
            done = []
            for k in mine[r * round_size:(r + 1) * round_size]:
                disp.move(point_coords(k, xs, ys))
                done.append((k, evaluate_point(forward or model, evalsets, bn, bn_data)))
            gathered = [p for part in group.gather(done) for p in part]
            if writer is not None:
                writer.write(gathered)
            bar.update(len(gathered))
    bar.close()


def prepare_and_fill(out: Path, model: nn.Module, make_directions: Callable[[], list[Direction]], xs: np.ndarray,
                     ys: np.ndarray | None, evalsets: dict[str, EvalSet], attrs: dict, *, resume: bool, overwrite: bool,
                     group: Group = Group(), extras: Callable[[list[Direction]], dict] | None = None,
                     log: Callable[[str], None] | None = None, **fill_kw) -> None:
    """Create (or reopen, with ``resume``) the surface file on rank 0, then fill the missing points on all ranks.

    On resume the directions are read back from the file and the stored settings must
    match ``attrs``; a problem found by rank 0 is raised on every rank.
    """
    writer, payload = None, None
    if group.is_main:
        try:
            writer, directions = _open_writer(out, make_directions, xs, ys, list(evalsets), attrs, resume, overwrite, extras)
            computed = writer.computed_flat()
            todo = [int(k) for k in np.flatnonzero(~computed)]
            if resume and computed.any() and log:
                log(f"resuming: {int(computed.sum())} of {computed.size} points already computed")
            payload = ("ok", directions, todo)
        except (ValueError, FileNotFoundError) as e:
            payload = ("error", str(e), None)
    status, directions, todo = group.broadcast(payload)
    if status == "error":
        raise ValueError(directions)
    try:
        fill_surface(model, directions, writer, xs, ys, todo, evalsets, group=group, **fill_kw)
        if writer is not None:
            writer.finish()
    finally:
        if writer is not None:
            writer.close()


CHECKED = ("kind", "index_order", "directions", "norm", "ignore", "dir_type", "seed", "samples", "sample_seed", "bn",
           "checkpoint_sha256", "checkpoint_b_sha256", "values")


def _open_writer(out, make_directions, xs, ys, splits, attrs, resume, overwrite, extras):
    wanted = {**attrs, "kind": "surface", "index_order": "x" if ys is None else "yx", "values": value_names(splits)}
    made: list[list[Direction]] = []

    def create() -> ResultWriter:
        made.append(make_directions())
        return create_surface(out, xs, ys, splits, made[0], attrs, extras(made[0]) if extras else None)

    def same_grid(w: ResultWriter) -> bool:
        old_y = w.dataset("ycoordinates")
        return np.array_equal(w.dataset("xcoordinates"), xs) and (ys is None) == (old_y is None) and (
            ys is None or np.array_equal(old_y, ys))

    writer, created = open_results(out, create, {k: wanted[k] for k in CHECKED if k in wanted}, same_grid,
                                   resume=resume, overwrite=overwrite)
    return writer, made[0] if created else writer.directions()
