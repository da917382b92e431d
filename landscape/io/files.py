"""Opening untrusted HDF5 files safely: links and storage that leave the file refused, sizes bounded, the kind
of a file read from its metadata alone; the attributes every file of ours carries."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from h5py import h5d, h5l, h5o

from .. import __version__

SCHEMA_VERSION = 1  #: the result-file schema this toolkit writes; a newer one is refused with one line


def sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): the provenance of a checkpoint or a result."""
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


def open_h5(path: str | Path, mode: str = "r") -> h5py.File:
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


MAX_LINKS = 200_000  # links a file may hold (ours hold a few thousand); a crafted one with millions is refused


def check_contained(f: h5py.File, path: str | Path) -> None:
    """Refuse a file whose data live elsewhere: links to other files, virtual datasets, external raw storage.

    A file handed to the explorer (or to ``plot``/``compare``) could otherwise make it read and send any file on
    the machine; links inside the file are fine. Walked with HDF5's own link iteration (h5py's ``visititems_links``
    costs half a millisecond a link in a large group: a crafted file of 100,000 links stalled a scan for a minute),
    each object looked at once, at most :data:`MAX_LINKS` links.
    """
    seen: set[int] = set()
    count = 0

    def visit(name: bytes, info) -> str | None:  # a reason stops the visit (a non-None return)
        nonlocal count
        count += 1
        shown = name.decode(errors="replace")
        if count > MAX_LINKS:
            return f"it holds more than {MAX_LINKS:,} links"
        if info.type == h5l.TYPE_EXTERNAL:
            return f"{shown!r} links to another file"
        if info.type == h5l.TYPE_SOFT:
            return None  # a path inside this file: whatever it names is visited as its own link
        if info.type != h5l.TYPE_HARD:
            return f"{shown!r} is a user-defined link"
        if info.u in seen:
            return None
        seen.add(info.u)
        obj = h5o.open(f.id, name)
        if isinstance(obj, h5d.DatasetID):
            plist = obj.get_create_plist()
            if plist.get_layout() == h5d.VIRTUAL:
                return f"{shown!r} is a virtual dataset (its data live in other files)"
            if plist.get_external_count():
                return f"{shown!r} keeps its data in an external file"
        return None

    reason = f.id.links.visit(visit, info=True)
    if reason:
        raise ValueError(f"{path}: refused: {reason}")


def root_attrs(f: h5py.File) -> dict:
    def plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, (np.ndarray, np.generic)):
            return v.tolist()
        return v

    return {k: plain(v) for k, v in f.attrs.items()}


def read_attrs(path: str | Path) -> dict:
    """The root attributes of an HDF5 file (its metadata)."""
    with open_h5(path) as f:
        return root_attrs(f)


MAX_GRID_POINTS = 10_000_000  # the most grid points a surface file may hold (ours are written within it)


def check_grid(path: str | Path, nx: int, ny: int) -> None:
    if nx < 1 or ny < 1 or nx * ny > MAX_GRID_POINTS:
        raise ValueError(f"{path}: refused: a grid of {nx} x {ny} points (this toolkit reads 1 to {MAX_GRID_POINTS:,})")


MAX_ELEMENTS = 10_000_000  # a dataset read whole may hold at most this many elements (a small file can claim more)


def read_whole(f: h5py.File, name: str, path: str | Path) -> np.ndarray:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{path}: {name!r} is not a dataset")
    if ds.size > MAX_ELEMENTS:
        raise ValueError(f"{path}: refused: {name!r} claims {ds.size:,} elements (more than {MAX_ELEMENTS:,})")
    return ds[()]


CONNECTIVITY = ("barrier", "barrier_aligned", "curve")  # the straight line, the aligned line, a trained curve
PLANE = "curve_plane"  # the 2-D surface in the plane of a curve (landscape.curve_plane)


def is_surface(category: str | None) -> bool:
    """A category whose files :func:`~landscape.io.read_surface` reads."""
    return bool(category) and (category.startswith("surface") or category in (*CONNECTIVITY, PLANE))  # type: ignore[union-attr]


def inspect_file(path: str | Path) -> tuple[str | None, str | None]:
    """What a file is, reading its metadata only.

    Args:
        path: the file.

    Returns:
        ``(category, None)`` for an analysis file (``surface_1d``/``surface_2d``, the lines and curves between two
        models :data:`CONNECTIVITY` (1-D surfaces too) and a curve's plane :data:`PLANE`, or its ``kind``;
        loss-landscape's files are surfaces),
        ``(None, None)`` for another HDF5 file, ``(None, reason)`` for one this toolkit refuses or cannot read
        (links out of the file, a grid too large, not HDF5).

    Raises:
        Nothing: a file it refuses or cannot read gives a reason instead.
    """
    try:
        with open_h5(path) as f:
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
            analysis = f.attrs.get("analysis")
            if y is None and analysis in ("barrier", "curve"):
                align = f.attrs.get("align", "none")
                return ("curve" if analysis == "curve" else "barrier" if align == "none" else "barrier_aligned"), None
            if y is not None and analysis == "plane":
                return PLANE, None
            return ("surface_1d" if y is None else "surface_2d"), None
    except (OSError, ValueError) as e:
        return None, str(e).splitlines()[0]


def file_category(path: str | Path) -> str | None:
    """The category of an analysis file (see :func:`inspect_file`); ``None`` for anything else.

    Args:
        path: the file.
    """
    return inspect_file(path)[0]


__all__ = ["SCHEMA_VERSION", "file_category", "inspect_file", "open_h5", "sha256"]
