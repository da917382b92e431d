"""Result files: every kind this toolkit writes (surfaces, sweeps, Hessians, robustness) and loss-landscape's
surfaces, read from untrusted HDF5 safely and written atomically.

:func:`read` opens any of them by its kind; the modules hold the pieces: :mod:`.files` (safe opening,
metadata, kinds), :mod:`.directions` (the direction-group format), :mod:`.results` (resumable result
files), :mod:`.surface` and :mod:`.sweep` (their readers and writers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .directions import AXES, read_direction_group, read_directions, write_direction
from .files import SCHEMA_VERSION, base_attrs, file_category, inspect_file, open_h5, read_attrs, sha256
from .results import MemoryWriter, ResultWriter, read_analysis, read_grid, write_analysis
from .surface import (
    SURFACE_METRICS,
    Surface,
    create_surface,
    export_loss_landscape,
    read_surface,
    surface_attrs,
    surface_progress,
    value_names,
)
from .sweep import Sweep, read_sweep


def read(path: str | Path) -> Any:
    """The result in any analysis file, by its kind: a :class:`Surface` (ours or loss-landscape's), a
    :class:`Sweep`, a :class:`~landscape.curvature.Hessian` (without eigenvectors) or a
    :class:`~landscape.robustness.Robustness`; anything else is refused with the reason."""
    category, reason = inspect_file(path)
    if category is None:
        raise ValueError(reason or f"{path}: not an analysis file (no kind, no xcoordinates)")
    if category.startswith("surface"):
        return read_surface(path)
    if category == "sweep":
        return read_sweep(path)
    if category == "hessian":
        from .hessian import read_hessian

        return read_hessian(path, vectors=False)
    if category == "robustness":
        from .robustness import read_robustness  # loads the corruption suite: only when asked

        return read_robustness(path)
    raise ValueError(f"{path}: no reader for kind {category!r}")


__all__ = [
    "AXES", "SURFACE_METRICS", "SCHEMA_VERSION", "MemoryWriter", "ResultWriter", "Surface", "Sweep", "base_attrs",
    "create_surface", "export_loss_landscape", "file_category", "inspect_file", "open_h5", "read",
    "read_analysis", "read_attrs", "read_direction_group", "read_directions", "read_grid", "read_surface",
    "read_sweep", "sha256", "surface_attrs", "surface_progress", "value_names", "write_analysis", "write_direction",
]  # fmt: skip
