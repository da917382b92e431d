"""Result files: every kind this toolkit writes (surfaces, sweeps, Hessians, robustness) and loss-landscape's
surfaces, read from untrusted HDF5 safely and written atomically.

:func:`read` opens any of them by its kind; the modules hold the pieces: :mod:`.files` (safe opening,
metadata, kinds), :mod:`.directions` (the direction-group format), :mod:`.results` (resumable result
files), :mod:`.surface` and :mod:`.sweep` (their readers and writers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .directions import read_directions
from .files import SCHEMA_VERSION, file_category, inspect_file, is_surface
from .hessian import Hessian, read_hessian
from .surface import Surface, export_loss_landscape, read_surface
from .sweep import Sweep, read_sweep


def read(path: str | Path) -> Any:
    """The result in any analysis file, by its kind.

    Args:
        path: a surface (ours or loss-landscape's), sweep, Hessian or robustness file.

    Returns:
        A :class:`Surface`, :class:`Sweep`, :class:`Hessian` (without eigenvectors: ``read_hessian`` reads them) or
        :class:`~landscape.io.robustness.Robustness`.

    Raises:
        ValueError: not an analysis file, or one this toolkit refuses (the reason is given).
    """
    category, reason = inspect_file(path)
    if category is None:
        raise ValueError(reason or f"{path}: not an analysis file (no kind, no xcoordinates)")
    if is_surface(category):
        return read_surface(path)
    if category == "sweep":
        return read_sweep(path)
    if category == "hessian":
        return read_hessian(path, vectors=False)
    if category == "robustness":
        from .robustness import read_robustness  # loads the corruption suite: only when asked

        return read_robustness(path)
    raise ValueError(f"{path}: no reader for kind {category!r}")


__all__ = [
    "SCHEMA_VERSION", "Hessian", "Surface", "Sweep", "export_loss_landscape", "file_category", "inspect_file", "read",
    "read_directions", "read_hessian", "read_surface", "read_sweep",
]  # fmt: skip
