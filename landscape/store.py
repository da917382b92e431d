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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from trainers.checkpoint import (
    atomic_write,
    changed_options,
    payload_bytes,
    remove_stale_temps,
)

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
    return {
        "schema_version": SCHEMA_VERSION,
        "toolkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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
    spread: dict[str, np.ndarray] = field(default_factory=dict)  # a group's mean surface: the std over its seeds

    @property
    def dim(self) -> int:
        return 1 if self.ycoordinates is None else 2

    @property
    def complete(self) -> bool:
        return bool(self.computed.all())

    @property
    def splits(self) -> list[str]:
        """The splits with a loss in this surface (``train``, ``test``, or a problem's own names)."""
        return [n[: -len("_loss")] for n in self.values if n.endswith("_loss")]

    def has(self, split: str, metric: str) -> bool:
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


def _open(path: str | Path, mode: str = "r") -> h5py.File:
    """Every HDF5 file this toolkit reads (or resumes) is opened here, and checked to hold its own data."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not an HDF5 file")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: an empty file (0 bytes), not an HDF5 file")
    try:  # readers take no lock: a job's writer holds the file open while it fills it (see ResultWriter)
        f = h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except OSError as e:
        text = str(e).splitlines()[0]
        if mode != "r" and "lock" in text.lower():
            raise ValueError(f"{path} is open for writing by another process (a job still running?)") from None
        raise ValueError(f"{path}: not a readable HDF5 file ({text[:120]})") from None
    try:
        check_contained(f, path)
    except ValueError:
        f.close()
        raise
    return f


def check_contained(f: h5py.File, path: str | Path) -> None:
    """Refuse a file whose data live elsewhere: links to other files, virtual datasets, external raw storage.

    A file handed to the explorer (or to ``plot``/``compare``) could otherwise make it read and
    send any file on the machine; links inside the file are fine.
    """

    def visit(name: str, link: object) -> str | None:  # a reason stops the visit (h5py: a non-None return)
        if isinstance(link, h5py.ExternalLink):
            return f"{name!r} links to another file ({link.filename})"
        if isinstance(link, h5py.SoftLink):
            return None  # a path inside this file: whatever it names is visited as its own link
        if not isinstance(link, h5py.HardLink):
            return f"{name!r} is a user-defined link"
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                return f"{name!r} is a virtual dataset (its data live in other files)"
            if obj.external:
                return f"{name!r} keeps its data in an external file"
        return None

    reason = f.visititems_links(visit)
    if reason:
        raise ValueError(f"{path}: refused: {reason}")


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


MAX_GRID_POINTS = 10_000_000  # the most grid points a surface file may hold (ours are written within it)


def check_grid(path: str | Path, nx: int, ny: int) -> None:
    if nx < 1 or ny < 1 or nx * ny > MAX_GRID_POINTS:
        raise ValueError(f"{path}: refused: a grid of {nx} x {ny} points (this toolkit reads 1 to {MAX_GRID_POINTS:,})")


def inspect_file(path: str | Path) -> tuple[str | None, str | None]:
    """``(category, None)`` for an analysis file (``surface_1d``/``surface_2d`` or its ``kind``; loss-landscape's
    files are surfaces), ``(None, None)`` for another HDF5 file, ``(None, reason)`` for one this toolkit refuses
    or cannot read (links out of the file, a grid too large, not HDF5). Reads metadata only."""
    try:
        with _open(path) as f:
            kind = f.attrs.get("kind", "surface" if "xcoordinates" in f else None)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind != "surface":
                return (kind if isinstance(kind, str) else None), None
            x, y = f.get("xcoordinates"), f.get("ycoordinates")
            if (
                not isinstance(x, h5py.Dataset)
                or x.ndim != 1
                or (y is not None and (not isinstance(y, h5py.Dataset) or y.ndim != 1))
            ):
                raise ValueError(f"{path}: xcoordinates/ycoordinates are not 1-D datasets")
            check_grid(path, x.shape[0], 1 if y is None else y.shape[0])
            return ("surface_1d" if y is None else "surface_2d"), None
    except (OSError, ValueError) as e:
        return None, str(e).splitlines()[0]


def file_category(path: str | Path) -> str | None:
    """The category of an analysis file (see :func:`inspect_file`); None for anything else."""
    return inspect_file(path)[0]


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


def read_surface(path: str | Path, max_points: int | None = None) -> Surface:
    """Read one of our surface files or a loss-landscape surface file; ``max_points`` reads only every k-th grid
    line per axis (and the last) so that about that many remain, without reading the rest of the file."""
    with _open(path) as f:
        if "xcoordinates" not in f:
            raise ValueError(f"{path}: not a surface file (no 'xcoordinates')")
        xs = _coordinates(f, "xcoordinates", path)
        ys = _coordinates(f, "ycoordinates", path) if "ycoordinates" in f else None
        check_grid(path, len(xs), 1 if ys is None else len(ys))
        attrs = _attrs(f)
        ours = attrs.get("kind") == "surface"
        if ours and attrs.get("schema_version", 0) > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema version {attrs['schema_version']} is newer than this toolkit reads")
        shape = (len(xs),) if ys is None else (len(ys), len(xs))
        if ours and "values" in attrs:  # every stored metric, in order
            names = [n for n in attrs["values"] if isinstance(f.get(n), h5py.Dataset)]
        else:
            names = [n for n in f if n.endswith(tuple(f"_{m}" for m in METRICS)) and isinstance(f[n], h5py.Dataset)]
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
        extras = {n: _whole(f, n, path) for n in ("proj_xcoord", "proj_ycoord", "explained_variance_ratio_") if n in f}
    return Surface(
        str(path),
        xs[ix],
        None if ys is None else ys[iy],
        values,
        computed,
        attrs,
        "landscape" if ours else "loss-landscape",
        extras,
    )


MAX_ELEMENTS = 10_000_000  # a dataset read whole may hold at most this many elements (a small file can claim more)


def _whole(f: h5py.File, name: str, path: str | Path) -> np.ndarray:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{path}: {name!r} is not a dataset")
    if ds.size > MAX_ELEMENTS:
        raise ValueError(f"{path}: refused: {name!r} claims {ds.size:,} elements (more than {MAX_ELEMENTS:,})")
    return ds[()]


def surface_progress(path: str | Path) -> tuple[int, int]:
    """(points computed, points in the grid) of one of our surface files (a job may still be filling it)."""
    with _open(path) as f:
        computed = _whole(f, "computed", path) if "computed" in f else None
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


def read_directions(path: str | Path) -> list[tuple[list[str] | None, list[np.ndarray]]]:
    """The stored directions: (tensor names or None for loss-landscape files, arrays in order)."""
    with _open(path) as f:
        out = []
        for axis in AXES:
            if axis in f:
                g = f[axis]
                names = (
                    [n.decode() if isinstance(n, bytes) else n for n in g.attrs["names"]]
                    if "names" in g.attrs
                    else None
                )
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
        try:  # a file to resume must be one this class made: its grid, its values, its mask
            self.shape = tuple(int(n) for n in self.f.attrs["grid_shape"])
            self.names = [str(n) for n in self.f.attrs["values"]]
            ok = self.f["computed"].shape == self.shape and all(
                self.f[n].shape[: len(self.shape)] == self.shape for n in self.names
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            self.f.close()
            raise ValueError(
                f"{path}: not a result file this toolkit can resume (no grid_shape, values or "
                "computed mask that fit together)"
            )

    @classmethod
    def create(
        cls,
        path: str | Path,
        kind: str,
        grid_shape: tuple[int, ...],
        values: dict[str, tuple[int, ...]],
        datasets: dict[str, object],
        attrs: dict,
        directions: dict[str, Direction],
    ) -> "ResultWriter":
        """Write the empty file under a temporary name and rename it: no half-made file is ever visible. Every
        value is allocated now (the disk's room is checked first), so filling the grid never grows the file."""
        cells = int(np.prod(grid_shape))
        size = (
            cells * (1 + 8 * sum(int(np.prod(e)) for e in values.values()))
            + payload_bytes(datasets)
            + payload_bytes(directions)
        )

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs.update(
                    {"kind": kind, **base_attrs(), "grid_shape": list(grid_shape), "values": list(values), **attrs}
                )
                for name, data in datasets.items():
                    f.create_dataset(name, data=data)
                for name, extra in values.items():
                    f.create_dataset(name, data=np.full(tuple(grid_shape) + tuple(extra), -1.0))
                f.create_dataset("computed", data=np.zeros(grid_shape, np.uint8))
                for name, d in directions.items():
                    _write_direction(f, name, d)

        atomic_write(Path(path), write, nbytes=size)
        return cls(Path(path))

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


RESUME_OPTIONS = {  # a stored attribute -> what the user set it with
    "grid": "another grid (--x/--y or --radii)",
    "checkpoint_sha256": "another checkpoint (its contents differ)",
    "checkpoint_b_sha256": "another second checkpoint",
    "weights_sha256": "other model weights",
    "params": "--params (other parameters analysed)",
    "values": "--split (other values stored)",
    "index_order": "--y (1-D vs 2-D)",
    "kind": "another analysis (kind)",
    "models": "another --baseline",
}


def open_results(
    out: str | Path,
    create: Callable[[], ResultWriter],
    wanted: dict,
    same_grid: Callable[[ResultWriter], bool],
    *,
    resume: bool,
    overwrite: bool,
) -> tuple[ResultWriter, bool]:
    """Create ``out``, or reopen it with ``resume`` after checking its settings; returns (writer, created)."""
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise ValueError(f"{out} exists: pass resume=True to finish it or overwrite=True to replace it")
    if out.exists() and resume:
        remove_stale_temps(out.parent)  # left by a writer killed mid-write
        writer = ResultWriter(out)
        stored = {k: _plain_seq(writer.attrs.get(k)) for k in wanted}
        diff = changed_options(stored, {k: _plain_seq(v) for k, v in wanted.items()}, RESUME_OPTIONS)
        if diff or not same_grid(writer):
            writer.close()
            raise ValueError(
                f"cannot resume {out}: it was made with {'; '.join(diff or [RESUME_OPTIONS['grid']])}; "
                f"use its options, or --overwrite to start again"
            )
        return writer, False
    if out.exists():
        out.unlink()
    return create(), True


def _plain_seq(v):
    return list(v) if isinstance(v, (list, tuple, np.ndarray)) else v


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
    """Write ``surface`` in loss-landscape's exact layout: ``(nx, ny)`` arrays filled y-major, -1 = not computed."""
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
                g = f.create_group(axis)
                for i, a in enumerate(arrays):
                    g[str(i)] = a
            for name, arr in surface.extras.items():
                f[name] = arr

    atomic_write(out, write, nbytes=payload_bytes(surface.values) + payload_bytes([a for _, a in directions]))


def write_analysis(
    path: str | Path,
    kind: str,
    arrays: dict[str, np.ndarray],
    attrs: dict,
    directions: dict[str, Direction] | None = None,
) -> None:
    """Write a finished (non-streamed) analysis atomically: arrays as datasets, metadata as attributes.

    ``directions`` are stored as groups in the direction-group layout (datasets ``"0".."N-1"``
    and a ``names`` attribute), e.g. Hessian eigenvectors reusable as surface axes.
    """

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"kind": kind, **base_attrs(), **attrs})
            for name, arr in arrays.items():
                f.create_dataset(name, data=arr)
            for name, d in (directions or {}).items():
                _write_direction(f, name, d)

    atomic_write(Path(path), write, nbytes=payload_bytes(arrays) + payload_bytes(directions or {}))


def read_analysis(path: str | Path, kind: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(attributes, top-level datasets) of one of our analysis files, optionally checking its kind."""
    with _open(path) as f:
        attrs = _attrs(f)
        if kind is not None and attrs.get("kind") != kind:
            raise ValueError(f"{path}: not a {kind} file (kind={attrs.get('kind')!r})")
        return attrs, {n: _whole(f, n, path) for n in f if isinstance(f[n], h5py.Dataset)}


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


def read_grid(
    path: str | Path, kind: str, names: dict[str, int] | None = None
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(attributes, datasets, values) of a :class:`ResultWriter` file, checked to be consistent; values are NaN
    where not computed. ``names``: list attributes that must hold as many strings as the grid's axis given."""
    attrs, arrays = read_analysis(path, kind)
    computed = arrays.get("computed")
    if computed is None or computed.ndim < 1:
        raise ValueError(f"{path}: has no 'computed' mask")
    computed = computed.astype(bool)
    listed = attrs.get("values")
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ValueError(f"{path}: its 'values' attribute is not a list of dataset names")
    for attr, axis in (names or {}).items():
        items = attrs.get(attr)
        if not isinstance(items, list) or len(items) != computed.shape[axis]:
            raise ValueError(f"{path}: attribute {attr!r} does not list the {computed.shape[axis]} entries of its grid")
    values = {}
    for name in listed:
        v = arrays.get(name)
        if v is None or v.shape[: computed.ndim] != computed.shape or v.dtype.kind not in "fiub":
            raise ValueError(f"{path}: {name!r} is missing or does not match the grid {computed.shape}")
        v = v.astype(np.float64)
        values[name] = np.where(computed.reshape(computed.shape + (1,) * (v.ndim - computed.ndim)), v, np.nan)
    return attrs, arrays, values


def read_sweep(path: str | Path) -> Sweep:
    attrs, arrays, values = read_grid(path, "sweep", {"kinds": 0})
    radii = arrays.get("radii")
    if radii is None or radii.ndim != 1 or len(radii) != arrays["computed"].shape[1]:
        raise ValueError(f"{path}: 'radii' does not match the sweep's grid")
    return Sweep(str(path), arrays["radii"], list(attrs["kinds"]), values, arrays["computed"].astype(bool), attrs)
