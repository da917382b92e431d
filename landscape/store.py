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

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from . import __version__
from .directions import Direction

SCHEMA_VERSION = 1
METRICS = ("loss", "acc")
AXES = ("xdirection", "ydirection")


def value_names(splits: list[str], metrics: tuple[str, ...] | list[str] = METRICS) -> list[str]:
    """``{split}_{metric}`` for every split and metric (the loss first): the datasets of a surface file."""
    return [f"{split}_{metric}" for split in splits for metric in metrics]


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_attrs() -> dict:
    return {"schema_version": SCHEMA_VERSION, "toolkit_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@dataclass
class Surface:
    """A surface read back: values are NaN where not computed (``computed`` is False)."""

    path: str
    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    values: dict[str, np.ndarray]
    computed: np.ndarray
    attrs: dict = field(default_factory=dict)
    layout: str = "landscape"  # or "loss-landscape"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    directions: list[Direction] | None = None  # the axes, when computed in memory (files: read_directions)

    @property
    def dim(self) -> int:
        return 1 if self.ycoordinates is None else 2

    @property
    def complete(self) -> bool:
        return bool(self.computed.all())

    @property
    def splits(self) -> list[str]:
        """The splits with a loss in this surface (``train``, ``test``, or a problem's own names)."""
        return [n[:-len("_loss")] for n in self.values if n.endswith("_loss")]

    def has(self, split: str, metric: str) -> bool:
        return f"{split}_{metric}" in self.values

    def downsample(self, max_points: int) -> Surface:
        """Every k-th grid line so that no axis has more than ``max_points`` (the last line always kept)."""
        def pick(n: int) -> np.ndarray:
            step = -(-n // max_points)
            return np.unique(np.append(np.arange(0, n, step), n - 1)) if step > 1 else np.arange(n)

        ix = pick(len(self.xcoordinates))
        if self.dim == 1:
            return Surface(self.path, self.xcoordinates[ix], None, {n: v[ix] for n, v in self.values.items()},
                           self.computed[ix], self.attrs, self.layout, self.extras)
        iy = pick(len(self.ycoordinates))
        grid = np.ix_(iy, ix)
        return Surface(self.path, self.xcoordinates[ix], self.ycoordinates[iy], {n: v[grid] for n, v in self.values.items()},
                       self.computed[grid], self.attrs, self.layout, self.extras)

    def slice(self, axis: str, at: float = 0.0) -> Surface:
        """The 1-D surface along ``axis`` ("x" or "y") through the grid line nearest ``at`` on the other axis."""
        if self.dim != 2:
            raise ValueError(f"{self.path} is already 1-D")
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        other = self.ycoordinates if axis == "x" else self.xcoordinates
        i = int(np.argmin(np.abs(other - at)))
        take = (lambda a: a[i]) if axis == "x" else (lambda a: a[:, i])
        coords = self.xcoordinates if axis == "x" else self.ycoordinates
        attrs = {**self.attrs, "slice_axis": axis, "slice": f"{'y' if axis == 'x' else 'x'}={other[i]:.4g}"}
        return Surface(self.path, coords, None, {n: take(v) for n, v in self.values.items()}, take(self.computed), attrs,
                       self.layout)


def _open(path: str | Path, mode: str = "r") -> h5py.File:
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    try:  # readers take no lock: a job's writer holds the file open while it fills it (see ResultWriter)
        return h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:120]})") from None


def _attrs(f: h5py.File) -> dict:
    def plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, (np.ndarray, np.generic)):
            return v.tolist()
        return v

    return {k: plain(v) for k, v in f.attrs.items()}


def read_attrs(path: str | Path) -> dict:
    """The root attributes of an HDF5 file (its metadata)."""
    with _open(path) as f:
        return _attrs(f)


def file_category(path: str | Path) -> str | None:
    """``surface_1d``/``surface_2d`` or the ``kind`` of any other analysis file (loss-landscape's files are
    surfaces); None if it is not one (or cannot be read yet: still being created)."""
    try:
        with _open(path) as f:
            kind = f.attrs.get("kind", "surface" if "xcoordinates" in f else None)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "surface":
                return "surface_2d" if "ycoordinates" in f else "surface_1d"
            return kind
    except (OSError, ValueError):
        return None


def read_surface(path: str | Path) -> Surface:
    """Read one of our surface files or a loss-landscape surface file."""
    with _open(path) as f:
        if "xcoordinates" not in f:
            raise ValueError(f"{path}: not a surface file (no 'xcoordinates')")
        xs = f["xcoordinates"][:]
        ys = f["ycoordinates"][:] if "ycoordinates" in f else None
        attrs = _attrs(f)
        ours = attrs.get("kind") == "surface"
        if ours and attrs.get("schema_version", 0) > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema version {attrs['schema_version']} is newer than this toolkit reads")
        shape = (len(xs),) if ys is None else (len(ys), len(xs))
        if ours and "values" in attrs:  # every stored metric, in order
            names = [n for n in attrs["values"] if isinstance(f.get(n), h5py.Dataset)]
        else:
            names = [n for n in f if n.endswith(tuple(f"_{m}" for m in METRICS)) and isinstance(f[n], h5py.Dataset)]
        raw = {n: f[n][:].astype(np.float64).ravel().reshape(shape) for n in names}
        if ours:
            computed = f["computed"][:].astype(bool).reshape(shape)
        else:  # loss-landscape: -1 marks points not computed yet
            computed = np.ones(shape, bool)
            for v in raw.values():
                computed &= v != -1
        values = {n: np.where(computed, v, np.nan) for n, v in raw.items()}
        extras = {n: f[n][:] for n in ("proj_xcoord", "proj_ycoord", "explained_variance_ratio_") if n in f}
    return Surface(str(path), xs, ys, values, computed, attrs, "landscape" if ours else "loss-landscape", extras)


def read_directions(path: str | Path) -> list[tuple[list[str] | None, list[np.ndarray]]]:
    """The stored directions: (tensor names or None for loss-landscape files, arrays in order)."""
    with _open(path) as f:
        out = []
        for axis in AXES:
            if axis in f:
                g = f[axis]
                names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["names"]] if "names" in g.attrs else None
                out.append((names, [g[str(i)][()] for i in range(len(g))]))
        return out


def _write_direction(f: h5py.File, axis: str, direction: Direction) -> None:
    g = f.create_group(axis)
    for i, t in enumerate(direction.values()):
        g.create_dataset(str(i), data=t.detach().cpu().numpy())
    g.attrs["names"] = list(direction)


class ResultWriter:
    """A result file filled point by point over a grid; every :meth:`write` is flushed to disk.

    Values are datasets of shape ``grid_shape + value_shape`` initialised to -1; the
    ``computed`` mask (``grid_shape``) says which points are done.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.f = _open(self.path, "r+")
        self.shape = tuple(int(n) for n in self.f.attrs["grid_shape"])
        self.names = list(self.f.attrs["values"])

    @classmethod
    def create(cls, path: str | Path, kind: str, grid_shape: tuple[int, ...], values: dict[str, tuple[int, ...]],
               datasets: dict[str, object], attrs: dict, directions: dict[str, Direction]) -> "ResultWriter":
        """Write the empty file under a temporary name and rename it: no half-made file is ever visible."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs.update({"kind": kind, **base_attrs(), "grid_shape": list(grid_shape), "values": list(values), **attrs})
                for name, data in datasets.items():
                    f.create_dataset(name, data=data)
                for name, extra in values.items():
                    f.create_dataset(name, data=np.full(tuple(grid_shape) + tuple(extra), -1.0))
                f.create_dataset("computed", data=np.zeros(grid_shape, np.uint8))
                for name, d in directions.items():
                    _write_direction(f, name, d)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return cls(path)

    @property
    def attrs(self) -> dict:
        return _attrs(self.f)

    def dataset(self, name: str) -> np.ndarray | None:
        return self.f[name][()] if name in self.f else None

    def computed_flat(self) -> np.ndarray:
        return self.f["computed"][:].astype(bool).ravel()

    def directions(self, names: tuple[str, ...] = AXES) -> list[Direction]:
        out = []
        for axis in names:
            if axis in self.f:
                g = self.f[axis]
                out.append({n: torch.from_numpy(np.asarray(g[str(i)][()])) for i, n in enumerate(g.attrs["names"])})
        return out

    def write(self, points: list[tuple[int, dict[str, object]]]) -> None:
        """Store ``(flat index, {value name: number or array})`` pairs, mark them computed, flush."""
        if not points:
            return
        index = np.unravel_index(np.array([k for k, _ in points]), self.shape)
        for name in self.names:
            arr = self.f[name][:]
            arr[index] = np.array([vals[name] for _, vals in points], dtype=np.float64)
            self.f[name][...] = arr
        computed = self.f["computed"][:]
        computed[index] = 1
        self.f["computed"][...] = computed
        self.f.flush()

    def finish(self) -> None:
        self.f.attrs["complete"] = bool(self.computed_flat().all())
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class MemoryWriter:
    """The in-memory twin of :class:`ResultWriter` (analyses called without ``out``): same values, same attrs."""

    def __init__(self, kind: str, grid_shape: tuple[int, ...], values: dict[str, tuple[int, ...]], attrs: dict) -> None:
        self.shape = tuple(grid_shape)
        self.arrays = {name: np.full(self.shape + tuple(extra), np.nan) for name, extra in values.items()}
        self.computed = np.zeros(self.shape, bool)
        self.attrs = {"kind": kind, **base_attrs(), "grid_shape": list(grid_shape), "values": list(values), **attrs}

    def write(self, points: list[tuple[int, dict[str, object]]]) -> None:
        for k, vals in points:
            index = np.unravel_index(k, self.shape)
            for name, arr in self.arrays.items():
                arr[index] = vals[name]
            self.computed[index] = True

    def finish(self) -> None:
        self.attrs["complete"] = bool(self.computed.all())


def open_results(out: str | Path, create: Callable[[], ResultWriter], wanted: dict, same_grid: Callable[[ResultWriter], bool],
                 *, resume: bool, overwrite: bool) -> tuple[ResultWriter, bool]:
    """Create ``out``, or reopen it with ``resume`` after checking its settings; returns (writer, created)."""
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise ValueError(f"{out} exists: pass resume=True to finish it or overwrite=True to replace it")
    if out.exists() and resume:
        writer = ResultWriter(out)
        stored = writer.attrs
        diff = [k for k in wanted if _plain_seq(stored.get(k)) != _plain_seq(wanted[k])]
        if diff or not same_grid(writer):
            writer.close()
            raise ValueError(f"cannot resume {out}: it was made with different {', '.join(diff or ['grid'])}")
        return writer, False
    if out.exists():
        out.unlink()
    return create(), True


def _plain_seq(v):
    return list(v) if isinstance(v, (list, tuple, np.ndarray)) else v


def surface_attrs(xs: np.ndarray, ys: np.ndarray | None, splits: list[str], attrs: dict) -> dict:
    """The attributes of a surface beyond the common ones (shared by files and in-memory surfaces)."""
    return {"index_order": "x" if ys is None else "yx", "splits": list(splits), **attrs}


def create_surface(path: str | Path, xs: np.ndarray, ys: np.ndarray | None, splits: list[str], directions: list[Direction],
                   attrs: dict, extras: dict[str, np.ndarray] | None = None, names: list[str] | None = None) -> ResultWriter:
    """An empty surface file in loss-landscape-compatible layout (module docstring); ``names`` are its values
    (default: loss and accuracy of each split)."""
    shape = (len(xs),) if ys is None else (len(ys), len(xs))
    datasets: dict[str, object] = {"dir_file": Path(path).name, "xcoordinates": np.asarray(xs, np.float64)}
    if ys is not None:
        datasets["ycoordinates"] = np.asarray(ys, np.float64)
    return ResultWriter.create(path, "surface", shape, {n: () for n in names or value_names(splits)},
                               {**datasets, **(extras or {})}, surface_attrs(xs, ys, splits, attrs),
                               dict(zip(AXES, directions)))


def export_loss_landscape(surface: Surface, directions: list[tuple[list[str] | None, list[np.ndarray]]], out: str | Path) -> None:
    """Write ``surface`` in loss-landscape's exact layout: ``(nx, ny)`` arrays filled y-major, -1 = not computed."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    nx = len(surface.xcoordinates)
    shape = (nx,) if surface.ycoordinates is None else (nx, len(surface.ycoordinates))
    try:
        with h5py.File(tmp, "w") as f:
            f["dir_file"] = out.name
            f["xcoordinates"] = surface.xcoordinates
            if surface.ycoordinates is not None:
                f["ycoordinates"] = surface.ycoordinates
            for name, v in surface.values.items():
                f[name] = np.where(surface.computed, v, -1.0).ravel().reshape(shape)
            for axis, (_, arrays) in zip(AXES, directions):
                g = f.create_group(axis)
                for i, a in enumerate(arrays):
                    g[str(i)] = a
            for name, arr in surface.extras.items():
                f[name] = arr
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_analysis(path: str | Path, kind: str, arrays: dict[str, np.ndarray], attrs: dict,
                   directions: dict[str, Direction] | None = None) -> None:
    """Write a finished (non-streamed) analysis atomically: arrays as datasets, metadata as attributes.

    ``directions`` are stored as groups in the direction-group layout (datasets ``"0".."N-1"``
    and a ``names`` attribute), e.g. Hessian eigenvectors reusable as surface axes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"kind": kind, **base_attrs(), **attrs})
            for name, arr in arrays.items():
                f.create_dataset(name, data=arr)
            for name, d in (directions or {}).items():
                _write_direction(f, name, d)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_analysis(path: str | Path, kind: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(attributes, top-level datasets) of one of our analysis files, optionally checking its kind."""
    with _open(path) as f:
        attrs = _attrs(f)
        if kind is not None and attrs.get("kind") != kind:
            raise ValueError(f"{path}: not a {kind} file (kind={attrs.get('kind')!r})")
        return attrs, {n: f[n][()] for n in f if isinstance(f[n], h5py.Dataset)}


def read_direction_group(path: str | Path, name: str) -> Direction:
    with _open(path) as f:
        if name not in f:
            raise ValueError(f"{path}: has no direction {name!r}")
        g = f[name]
        return {n: torch.from_numpy(np.asarray(g[str(i)][()])) for i, n in enumerate(g.attrs["names"])}


@dataclass
class Sweep:
    """A perturbation-size sweep read back: arrays are (kinds, radii[, trials]), NaN where not computed."""

    path: str
    radii: np.ndarray
    kinds: list[str]
    values: dict[str, np.ndarray]
    computed: np.ndarray
    attrs: dict

    def curve(self, kind: str, name: str = "loss_mean") -> np.ndarray:
        if kind not in self.kinds:
            raise ValueError(f"{self.path} has no {kind!r} sweep (it has {', '.join(self.kinds)})")
        return self.values[name][self.kinds.index(kind)]


def read_grid(path: str | Path, kind: str) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(attributes, datasets, values) of a :class:`ResultWriter` file; values are NaN where not computed."""
    attrs, arrays = read_analysis(path, kind)
    computed = arrays["computed"].astype(bool)
    values = {}
    for name in attrs["values"]:
        v = arrays[name].astype(np.float64)
        values[name] = np.where(computed.reshape(computed.shape + (1,) * (v.ndim - computed.ndim)), v, np.nan)
    return attrs, arrays, values


def read_sweep(path: str | Path) -> Sweep:
    attrs, arrays, values = read_grid(path, "sweep")
    return Sweep(str(path), arrays["radii"], list(attrs["kinds"]), values, arrays["computed"].astype(bool), attrs)
