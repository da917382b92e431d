"""HDF5 storage of analyses: our self-describing files, and loss-landscape's layout read and written.

Our surface file (``kind="surface"``) keeps loss-landscape's dataset names
(``xcoordinates``, ``ycoordinates``, ``train_loss``, ``train_acc`` (percent), ``test_*``)
and direction groups (``xdirection``/``ydirection`` with datasets ``"0".."N-1"``), so
their tools read it; 2-D arrays have shape ``(ny, nx)`` with ``Z[i, j] = f(x[j], y[i])``
(root attribute ``index_order="yx"``), the same raster order loss-landscape fills. A
``computed`` mask tells points not yet computed from diverged ones (inf/NaN values).
Metadata are root attributes. loss-landscape's own files are ``(nx, ny)``-shaped arrays
filled y-major with -1 for "not computed"; :func:`read_surface` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from landscape._system.files import atomic_write, payload_bytes

from ..directions import Direction
from .directions import AXES, group_direction, write_group
from .files import SCHEMA_VERSION, check_grid, open_h5, read_whole, root_attrs
from .results import ResultWriter

SURFACE_METRICS = ("loss", "acc")


def value_names(splits: list[str], metrics: tuple[str, ...] | list[str] = SURFACE_METRICS) -> list[str]:
    """``{split}_{metric}`` for every split and metric (the loss first): the datasets of a surface file."""
    return [f"{split}_{metric}" for split in splits for metric in metrics]


@dataclass
class Surface:
    """A loss surface, computed or read back: values are NaN where not computed (``computed`` is False).

    Attributes:
        path: the file it was read from (``""`` in memory).
        xcoordinates: the coordinates along the first direction (shape ``(X,)``).
        ycoordinates: along the second (shape ``(Y,)``); ``None`` for a 1-D slice.
        values: ``"{split}_{metric}"`` (e.g. ``train_loss``) of shape ``(Y, X)`` (``(X,)`` in 1-D): the value at
            ``(x[j], y[i])`` is ``values[name][i, j]``.
        computed: the mask of the points done, of the grid's shape.
        attrs: the file's metadata (settings, provenance, ``nonfinite_points``).
        layout: ``"landscape"`` (ours) or ``"loss-landscape"`` (a file of tomgoldstein/loss-landscape).
        extras: further arrays (a trajectory's projected path and explained variance).
        directions: the axes as dicts of tensors keyed by name: from the analysis, or from
            ``read_surface(directions=True)``; ``None`` otherwise.
        spread: for a group's mean surface, the standard deviation over its seeds of each value.
    """

    path: str
    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    values: dict[str, np.ndarray]
    computed: np.ndarray
    attrs: dict = field(default_factory=dict)
    layout: str = "landscape"  # or "loss-landscape"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    directions: list[Direction] | None = None  # the axes: from the analysis, or read_surface(directions=True)
    spread: dict[str, np.ndarray] = field(default_factory=dict)  # a group's mean surface: the std over its seeds

    @property
    def dim(self) -> int:
        """1 for a slice, 2 for a plane."""
        return 1 if self.ycoordinates is None else 2

    @property
    def complete(self) -> bool:
        """Whether every grid point was computed."""
        return bool(self.computed.all())

    @property
    def splits(self) -> list[str]:
        """The splits with a loss in this surface (``train``, ``test``, or a problem's own names)."""
        return [n[: -len("_loss")] for n in self.values if n.endswith("_loss")]

    def has(self, split: str, metric: str) -> bool:
        """Whether the surface holds ``metric`` (``"loss"``, ``"acc"``) on ``split``."""
        return f"{split}_{metric}" in self.values

    def slice(self, axis: str, at: float = 0.0) -> Surface:
        """The 1-D surface along ``axis`` ("x" or "y") through the grid line nearest ``at`` on the other axis."""
        if self.dim != 2:
            raise ValueError(f"{self.path} is already 1-D")
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        assert self.ycoordinates is not None  # 2-D
        other, coords = (
            (self.ycoordinates, self.xcoordinates) if axis == "x" else (self.xcoordinates, self.ycoordinates)
        )
        i = int(np.argmin(np.abs(other - at)))
        take = (lambda a: a[i]) if axis == "x" else (lambda a: a[:, i])
        attrs = {**self.attrs, "slice_axis": axis, "slice": f"{'y' if axis == 'x' else 'x'}={other[i]:.4g}"}
        return Surface(
            self.path,
            coords,
            None,
            {n: take(v) for n, v in self.values.items()},
            take(self.computed),
            attrs,
            self.layout,
            spread={n: take(v) for n, v in self.spread.items()},
        )


def _pick(n: int, max_points: int | None) -> tuple[np.ndarray, int]:
    """Every k-th index and the last, so that at most about ``max_points`` remain; and k."""
    step = 1 if max_points is None else max(1, -(-n // max_points))
    idx = np.arange(0, n, step)
    return (np.append(idx, n - 1) if idx[-1] != n - 1 else idx), step


def _read_strided(ds: h5py.Dataset, iy: np.ndarray | None, ix: np.ndarray, sx: int) -> np.ndarray:
    """``ds[iy][:, ix]`` (or ``ds[ix]`` in 1-D) reading only those elements from the file."""
    last = ix[-1] % sx != 0  # the last index is off the stride: read it apart
    if iy is None:
        part = ds[::sx]
        return np.concatenate([part, ds[ix[-1] : ix[-1] + 1]]) if last else part
    rows = iy.tolist()
    part = ds[rows, ::sx]
    return np.concatenate([part, ds[rows, ix[-1] : ix[-1] + 1]], axis=1) if last else part


def read_surface(path: str | Path, max_points: int | None = None, *, directions: bool = False) -> Surface:
    """One of our surface files, or a loss-landscape surface file.

    Args:
        path: the file.
        max_points: read only every k-th grid line per axis (and the last) so that about this many points remain,
            without reading the rest of the file (``None``: all).
        directions: also read the axes into ``Surface.directions`` (our files only), a model's size each.

    Returns:
        The :class:`Surface`.

    Raises:
        ValueError: not a surface file, or one whose arrays do not fit its grid or whose data live outside it.
    """
    with open_h5(path) as f:
        if "xcoordinates" not in f:
            raise ValueError(f"{path}: not a surface file (no 'xcoordinates')")
        xs = _coordinates(f, "xcoordinates", path)
        ys = _coordinates(f, "ycoordinates", path) if "ycoordinates" in f else None
        check_grid(path, len(xs), 1 if ys is None else len(ys))
        attrs = root_attrs(f)
        ours = attrs.get("kind") == "surface"
        if ours and attrs.get("schema_version", 0) > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema version {attrs['schema_version']} is newer than this toolkit reads")
        shape = (len(xs),) if ys is None else (len(ys), len(xs))
        if ours and "values" in attrs:  # every stored metric, in order
            names = [n for n in attrs["values"] if isinstance(f.get(n), h5py.Dataset)]
        else:
            names = [
                n for n in f if n.endswith(tuple(f"_{m}" for m in SURFACE_METRICS)) and isinstance(f[n], h5py.Dataset)
            ]
        for n in names + (["computed"] if ours else []):
            if n not in f:
                raise ValueError(f"{path}: has no {n!r} dataset")
            if int(np.prod(f[n].shape)) != int(np.prod(shape)) or (ours and tuple(f[n].shape) != shape):
                raise ValueError(f"{path}: {n!r} has shape {tuple(f[n].shape)}, the grid is {shape}")
        ix, sx = _pick(len(xs), max_points)
        iy = None if ys is None else _pick(len(ys), max_points)[0]
        if ours:
            raw = {n: _read_strided(f[n], iy, ix, sx).astype(np.float64) for n in names}
            computed = _read_strided(f["computed"], iy, ix, sx).astype(bool)
        else:  # loss-landscape: (nx, ny) arrays filled y-major, -1 marks points not computed yet
            full = {n: f[n][()].astype(np.float64).ravel().reshape(shape) for n in names}
            raw = {n: v[ix] if iy is None else v[np.ix_(iy, ix)] for n, v in full.items()}
            computed = np.ones((len(ix),) if iy is None else (len(iy), len(ix)), bool)
            for v in raw.values():
                computed &= v != -1
        values = {n: np.where(computed, v, np.nan) for n, v in raw.items()}
        extras = {
            n: read_whole(f, n, path)
            for n in (
                "proj_xcoord",
                "proj_ycoord",
                "explained_variance_ratio_",
                "coefficients",
                "train_loss_history",
                "evaluated",
            )
            if n in f
        }
        axes = [group_direction(f[axis]) for axis in AXES if axis in f] if directions and ours else None
        spread = {  # a surface over several seeds of directions: each point's std over them
            n: _read_strided(f[f"{n}_std"], iy, ix, sx).astype(np.float64)
            for n in names
            if ours and isinstance(f.get(f"{n}_std"), h5py.Dataset) and f[f"{n}_std"].shape == shape
        }
    return Surface(
        str(path),
        xs[ix],
        None if ys is None else ys[iy],
        values,
        computed,
        attrs,
        "landscape" if ours else "loss-landscape",
        extras,
        axes,
        spread,
    )


def surface_progress(path: str | Path) -> tuple[int, int]:
    """(points computed, points in the grid) of one of our surface files (a job may still be filling it)."""
    with open_h5(path) as f:
        computed = read_whole(f, "computed", path) if "computed" in f else None
        if computed is None:
            return 0, 0
        return int(np.count_nonzero(computed)), int(computed.size)


def _coordinates(f: h5py.File, name: str, path: str | Path) -> np.ndarray:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "fiu":
        raise ValueError(f"{path}: {name!r} is not a 1-D numeric dataset")
    values = ds[()].astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: {name!r} holds non-finite coordinates")
    return values


def surface_attrs(xs: np.ndarray, ys: np.ndarray | None, splits: list[str], attrs: dict) -> dict:
    """The attributes of a surface beyond the common ones (shared by files and in-memory surfaces)."""
    return {"index_order": "x" if ys is None else "yx", "splits": list(splits), **attrs}


def create_surface(
    path: str | Path,
    xs: np.ndarray,
    ys: np.ndarray | None,
    splits: list[str],
    directions: list[Direction],
    attrs: dict,
    extras: dict[str, np.ndarray] | None = None,
    names: list[str] | None = None,
) -> ResultWriter:
    """An empty surface file in loss-landscape-compatible layout (module docstring); ``names`` are its values
    (default: loss and accuracy of each split)."""
    shape = (len(xs),) if ys is None else (len(ys), len(xs))
    datasets: dict[str, object] = {"dir_file": Path(path).name, "xcoordinates": np.asarray(xs, np.float64)}
    if ys is not None:
        datasets["ycoordinates"] = np.asarray(ys, np.float64)
    return ResultWriter.create(
        path,
        "surface",
        shape,
        {n: () for n in names or value_names(splits)},
        {**datasets, **(extras or {})},
        surface_attrs(xs, ys, splits, attrs),
        dict(zip(AXES, directions)),
    )


def export_loss_landscape(
    surface: Surface, directions: list[tuple[list[str] | None, list[np.ndarray]]], out: str | Path
) -> None:
    """Write ``surface`` in loss-landscape's exact layout (``(nx, ny)`` arrays filled y-major, -1 = not computed).

    Args:
        surface: the surface to export.
        directions: its axes as :func:`read_directions` returns them (stored as loss-landscape's direction file).
        out: the HDF5 file to write (atomically).
    """
    out = Path(out)
    nx = len(surface.xcoordinates)
    shape = (nx,) if surface.ycoordinates is None else (nx, len(surface.ycoordinates))

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f["dir_file"] = out.name
            f["xcoordinates"] = surface.xcoordinates
            if surface.ycoordinates is not None:
                f["ycoordinates"] = surface.ycoordinates
            for name, v in surface.values.items():
                f[name] = np.where(surface.computed, v, -1.0).ravel().reshape(shape)
            for axis, (_, arrays) in zip(AXES, directions):
                write_group(f, axis, arrays)  # loss-landscape's groups carry no names
            for name, arr in surface.extras.items():
                f[name] = arr

    atomic_write(out, write, nbytes=payload_bytes(surface.values) + payload_bytes([a for _, a in directions]))


__all__ = ["Surface", "read_surface", "export_loss_landscape"]
