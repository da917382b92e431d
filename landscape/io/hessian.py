"""The Hessian result (``kind="hessian"``): eigenpairs, trace and spectral density, written stage by stage by
:func:`landscape.hessian` and read back checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..directions import Direction
from .directions import read_direction_group
from .results import read_analysis, write_analysis


@dataclass
class Hessian:
    """What :func:`hessian` computed (``None`` where not asked), in memory or read back from its file.

    Attributes:
        eigenvalues: the top-k (``which="largest"``) or most negative (``"smallest"``) eigenvalues, in that order.
        residuals: ``||H v - lambda v||`` of each pair.
        eigenvectors: unit-norm directions keyed by parameter name (zero outside the analysed parameters).
        eigen_matvecs, eigen_converged: the products Lanczos took, and whether every residual met ``tol``.
        trace, trace_stderr, trace_ci95, trace_matvecs: the trace estimate, its standard error, 95 % interval
            and products.
        density_grid, density, slq_nodes, slq_weights, density_sigma, density_matvecs: the smoothed spectral
            density on its grid, the quadrature nodes and weights per probe, the smoothing width and products.
        attrs: the file's metadata (settings, provenance, ``stages_done``, ``complete``).
        path: the file it was read from (``""`` in memory).
    """

    eigenvalues: np.ndarray | None = None  # largest first ("smallest": most negative first)
    residuals: np.ndarray | None = None  # ||H v - lambda v|| of each pair
    eigenvectors: list[Direction] = field(default_factory=list)  # unit norm, keyed by parameter name
    eigen_matvecs: int | None = None
    eigen_converged: bool | None = None
    trace: float | None = None
    trace_stderr: float | None = None
    trace_ci95: np.ndarray | None = None
    trace_matvecs: int | None = None
    density_grid: np.ndarray | None = None
    density: np.ndarray | None = None
    slq_nodes: np.ndarray | None = None
    slq_weights: np.ndarray | None = None
    density_sigma: float | None = None
    density_matvecs: int | None = None
    batch_eigenvalues: np.ndarray | None = None
    batch_matvecs: int | None = None
    attrs: dict = field(default_factory=dict)
    path: str = ""

    def arrays(self) -> dict[str, np.ndarray]:
        """The file's datasets."""
        out = {}
        for name in (
            "eigenvalues",
            "residuals",
            "trace_ci95",
            "density_grid",
            "density",
            "slq_nodes",
            "slq_weights",
            "batch_eigenvalues",
        ):
            if getattr(self, name) is not None:
                out[name] = np.asarray(getattr(self, name))
        for name, kind in (
            ("eigen_matvecs", np.int64),
            ("eigen_converged", np.bool_),
            ("trace", np.float64),
            ("trace_stderr", np.float64),
            ("trace_matvecs", np.int64),
            ("density_sigma", np.float64),
            ("density_matvecs", np.int64),
            ("batch_matvecs", np.int64),
        ):
            if getattr(self, name) is not None:
                out[name] = np.asarray(kind(getattr(self, name)))
        return out


def read_hessian(path: str | Path, *, vectors: bool = True) -> Hessian:
    """A ``kind="hessian"`` file as a :class:`Hessian`, checked.

    Args:
        path: the file.
        vectors: also read the eigenvectors (``False``: the numbers only, faster).

    Returns:
        The :class:`Hessian` with ``path`` set.

    Raises:
        ValueError: not a Hessian file, or arrays of the wrong shape (eigenvalues and residuals of different
            lengths, a trace that is not a number, a density off its grid).
    """
    attrs, arrays = read_analysis(path, "hessian")
    shapes = {
        "eigenvalues": 1,
        "residuals": 1,
        "trace_ci95": 1,
        "density_grid": 1,
        "density": 1,
        "slq_nodes": 2,
        "slq_weights": 2,
        "batch_eigenvalues": 1,
    }
    for name, value in arrays.items():
        if value.dtype.kind not in "fiub" or value.ndim != shapes.get(name, 0):
            raise ValueError(f"{path}: {name!r} is not a {shapes.get(name, 0)}-D number array")
    for a, b in (("eigenvalues", "residuals"), ("density_grid", "density")):
        if a in arrays and b in arrays and arrays[a].shape != arrays[b].shape:
            raise ValueError(f"{path}: {a!r} and {b!r} differ in length")
    plain: dict[str, Any] = {
        k: (v.item() if np.ndim(v) == 0 else v) for k, v in arrays.items() if k in Hessian.__dataclass_fields__
    }
    count = len(arrays["eigenvalues"]) if "eigenvalues" in arrays and vectors else 0
    eigenvectors = [read_direction_group(path, f"eigenvector_{i}") for i in range(count)]
    return Hessian(**plain, eigenvectors=eigenvectors, attrs=attrs, path=str(path))


def write_hessian(out: str | Path, result: Hessian) -> None:
    """``result`` to ``out`` atomically: arrays as datasets, eigenvectors as direction groups ``eigenvector_i``."""
    skip = ("kind", "schema_version", "toolkit_version", "created")
    write_analysis(
        out,
        "hessian",
        result.arrays(),
        {k: v for k, v in result.attrs.items() if k not in skip},
        {f"eigenvector_{i}": d for i, d in enumerate(result.eigenvectors)},
    )


__all__ = ["Hessian", "read_hessian", "write_hessian"]
