"""Result files filled point by point over a grid (resumable: every write is flushed, a ``computed`` mask
says what is done) and finished analyses written at once. The policy of opening, resuming and replacing them is
:mod:`landscape._driver`'s."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from landscape._system.files import atomic_write, payload_bytes

from ..directions import Direction
from .directions import AXES, group_direction, write_direction
from .files import base_attrs, open_h5, read_whole, root_attrs


class ResultWriter:
    """A result file filled point by point over a grid; every :meth:`write` is flushed to disk.

    Values are datasets of shape ``grid_shape + value_shape`` initialised to -1; the
    ``computed`` mask (``grid_shape``) says which points are done.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.f = open_h5(self.path, "r+")
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
                    write_direction(f, name, d)

        atomic_write(Path(path), write, nbytes=size)
        return cls(Path(path))

    @property
    def attrs(self) -> dict:
        return root_attrs(self.f)

    def dataset(self, name: str) -> np.ndarray | None:
        return self.f[name][()] if name in self.f else None

    def computed_flat(self) -> np.ndarray:
        return self.f["computed"][:].astype(bool).ravel()

    def directions(self, names: tuple[str, ...] = AXES) -> list[Direction]:
        return [group_direction(self.f[axis]) for axis in names if axis in self.f]

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

    def finish(self) -> int:
        """Mark the file complete (or not) and record how many computed points hold a non-finite value."""
        computed = self.f["computed"][()].astype(bool)
        nonfinite = nonfinite_points({n: self.f[n][()] for n in self.names}, computed)
        self.f.attrs.update({"complete": bool(computed.all()), "nonfinite_points": nonfinite})
        self.f.flush()
        return nonfinite

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

    def finish(self) -> int:
        nonfinite = nonfinite_points(self.arrays, self.computed)
        self.attrs.update({"complete": bool(self.computed.all()), "nonfinite_points": nonfinite})
        return nonfinite


def nonfinite_points(arrays: dict[str, np.ndarray], computed: np.ndarray) -> int:
    """How many computed grid points have a NaN or infinite loss (a diverged model): stored as they are, and
    counted so that no summary hides them. (Accuracies are NaN by design where a problem has none.)"""
    bad = np.zeros(computed.shape, bool)
    for name, arr in arrays.items():
        if "loss" not in name:
            continue
        bad |= ~np.isfinite(arr).reshape(computed.shape + (-1,)).all(-1)
    return int((bad & computed).sum())


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
                write_direction(f, name, d)

    atomic_write(Path(path), write, nbytes=payload_bytes(arrays) + payload_bytes(directions or {}))


def read_analysis(path: str | Path, kind: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(attributes, top-level datasets) of one of our analysis files, optionally checking its kind."""
    with open_h5(path) as f:
        attrs = root_attrs(f)
        if kind is not None and attrs.get("kind") != kind:
            raise ValueError(f"{path}: not a {kind} file (kind={attrs.get('kind')!r})")
        return attrs, {n: read_whole(f, n, path) for n in f if isinstance(f[n], h5py.Dataset)}


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


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
