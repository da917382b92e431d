"""Adaptive grid refinement: evaluate a coarse grid, then only the cells where interpolation would be wrong.

A cell (a span of grid indices between evaluated corners) is tested by evaluating its centre and the middles of its
edges and comparing them with the (bi)linear interpolation of its corners: all within ``tol``, the cell is accepted
and its other points are interpolated; otherwise its halves (quarters), whose corners the test has just evaluated,
are tested the same way, down to single grid steps. Smooth regions cost about three points per coarse cell; fast
changes and kinks are evaluated point by point. Pure: ``evaluate`` is any function of grid index pairs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Evaluate = Callable[[list[tuple[int, int]]], list[dict[str, float]]]  # (iy, ix) pairs -> values per point


def _coarse(n: int, stride: int) -> list[int]:
    return sorted({*range(0, n, stride), n - 1})


def refine(nx: int, ny: int, evaluate: Evaluate, key: str, tol: float, stride: int = 8) -> tuple[dict, np.ndarray]:
    """The grid's values (``{name: (ny, nx) array}``; ``ny = 1`` for a 1-D slice) from as few evaluations as the
    tolerance allows, and the mask of the points evaluated.

    Args:
        nx: the grid's points along x.
        ny: along y (1: a 1-D slice).
        evaluate: values at a batch of ``(iy, ix)`` index pairs.
        key: the value the test compares (e.g. ``train_loss``); every value is interpolated in the same cells.
        tol: the largest accepted difference between a midpoint's value and its interpolation.
        stride: the coarse grid's spacing in grid steps (a power of 2 refines evenly).
    """
    values: dict[str, np.ndarray] = {}
    done = np.zeros((ny, nx), bool)

    def run(points: list[tuple[int, int]]) -> None:
        points = sorted({p for p in points if not done[p]})
        if not points:
            return
        for p, vals in zip(points, evaluate(points)):
            for name, v in vals.items():
                values.setdefault(name, np.full((ny, nx), np.nan))[p] = v
            done[p] = True

    ys, xs = ([0] if ny == 1 else _coarse(ny, stride)), _coarse(nx, stride)
    run([(i, j) for i in ys for j in xs])
    cells = [(y0, y1, x0, x1) for y0, y1 in zip(ys, ys[1:] or ys) for x0, x1 in zip(xs, xs[1:])]
    while cells:
        cells = [c for c in cells if c[1] - c[0] > 1 or c[3] - c[2] > 1]  # else every point is a corner
        probes = [_probes(*c) for c in cells]
        run([p for ps in probes for p in ps])
        split: list[tuple[int, int, int, int]] = []
        accepted: list[tuple[int, int, int, int]] = []
        for (y0, y1, x0, x1), ps in zip(cells, probes):
            guess = _interpolate(values[key], y0, y1, x0, x1)
            wrong = any(not abs(values[key][p] - guess[p[0] - y0, p[1] - x0]) <= tol for p in ps)
            (split if wrong else accepted).append((y0, y1, x0, x1))
        for y0, y1, x0, x1 in accepted:
            for v in values.values():
                block = v[y0 : y1 + 1, x0 : x1 + 1]
                fill = _interpolate(v, y0, y1, x0, x1)
                block[~done[y0 : y1 + 1, x0 : x1 + 1]] = fill[~done[y0 : y1 + 1, x0 : x1 + 1]]
        cells = []
        for y0, y1, x0, x1 in split:  # the children's corners are the parent's corners and probes
            ym, xm = (y0 + y1) // 2, (x0 + x1) // 2
            yr = [(y0, y1)] if y1 - y0 <= 1 else [(y0, ym), (ym, y1)]
            xr = [(x0, x1)] if x1 - x0 <= 1 else [(x0, xm), (xm, x1)]
            cells += [(a0, a1, b0, b1) for a0, a1 in yr for b0, b1 in xr]
    return values, done


def _probes(y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
    """The points a cell is tested at: its centre and the middles of its edges (shared with its neighbours)."""
    ym, xm = (y0 + y1) // 2, (x0 + x1) // 2
    return sorted({(ym, xm), (y0, xm), (y1, xm), (ym, x0), (ym, x1)})


def _interpolate(v: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The cell's (bi)linear interpolation of its corners, on every grid point of the cell."""
    ty = np.linspace(0, 1, y1 - y0 + 1)[:, None] if y1 > y0 else np.zeros((1, 1))
    tx = np.linspace(0, 1, x1 - x0 + 1)[None, :]
    a, b, c, d = v[y0, x0], v[y0, x1], v[y1, x0], v[y1, x1]
    return (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * c + tx * d)
