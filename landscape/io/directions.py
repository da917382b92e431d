"""The direction-group format: a group of datasets ``"0".."N-1"`` (one per tensor, in order) with a ``names``
attribute (loss-landscape's groups have none). Surface axes (``xdirection``/``ydirection``) and Hessian
eigenvectors (``eigenvector_i``) are stored this way; this module is the only one that reads or writes it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from ..directions import Direction
from .files import open_h5

# a surface's axes; a curve's further control points (a Bezier curve with several bends) are directions 2, 3, ...
AXES = ("xdirection", "ydirection", *(f"direction{i}" for i in range(2, 16)))


def write_group(f: h5py.File, name: str, arrays: list[np.ndarray], names: list[str] | None = None) -> None:
    """One direction group: ``arrays`` as datasets ``"0".."N-1"``, and the tensors' ``names`` (ours) or none
    (loss-landscape's layout)."""
    g = f.create_group(name)
    for i, a in enumerate(arrays):
        g.create_dataset(str(i), data=a)
    if names is not None:
        g.attrs["names"] = list(names)


def read_group(g: h5py.Group) -> tuple[list[str] | None, list[np.ndarray]]:
    """(tensor names, or None for loss-landscape's groups; the arrays in order)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["names"]] if "names" in g.attrs else None
    return names, [g[str(i)][()] for i in range(len(g))]


def group_direction(g: h5py.Group) -> Direction:
    """A group of ours as a direction (name -> tensor)."""
    names, arrays = read_group(g)
    if names is None:
        raise ValueError(f"direction group {g.name!r} has no tensor names (a loss-landscape file?)")
    return {n: torch.from_numpy(np.asarray(a)) for n, a in zip(names, arrays)}


def write_direction(f: h5py.File, name: str, direction: Direction) -> None:
    write_group(f, name, [t.detach().cpu().numpy() for t in direction.values()], list(direction))


def read_directions(path: str | Path) -> list[tuple[list[str] | None, list[np.ndarray]]]:
    """The stored surface axes of a surface file.

    Args:
        path: a surface file (ours or loss-landscape's).

    Returns:
        One ``(tensor names, arrays)`` pair per axis, arrays in order (names ``None`` for loss-landscape files).
    """
    with open_h5(path) as f:
        return [read_group(f[axis]) for axis in AXES if axis in f]


def read_direction_group(path: str | Path, name: str) -> Direction:
    with open_h5(path) as f:
        if name not in f:
            raise ValueError(f"{path}: has no direction {name!r}")
        return group_direction(f[name])


__all__ = ["read_directions"]
