"""Perturbation sweeps read back: loss and accuracy per (kind, radius)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .results import read_grid


@dataclass
class Sweep:
    """A perturbation-size sweep, computed or read back.

    Attributes:
        path: the file it was read from (``""`` in memory).
        radii: the perturbation radii, increasing (shape ``(R,)``).
        kinds: the sweep kinds in the order of the first axis (``random``, ``adversarial``, ...).
        values: ``loss_mean``, ``loss_std``, ``acc_mean``, ``acc_std`` of shape ``(K, R)`` and the per-trial
            ``losses``, ``accs`` of shape ``(K, R, trials)``; NaN where not computed (accuracies: also NaN for a
            problem without an ``acc`` metric).
        computed: ``(K, R)`` mask of the points done.
        attrs: the file's metadata (settings, provenance, ``nonfinite_points``).
    """

    path: str
    radii: np.ndarray
    kinds: list[str]
    values: dict[str, np.ndarray]
    computed: np.ndarray
    attrs: dict

    def curve(self, kind: str, name: str = "loss_mean") -> np.ndarray:
        """The ``(R,)`` values of ``name`` along the radii for ``kind``; raises ValueError for a kind not swept."""
        if kind not in self.kinds:
            raise ValueError(f"{self.path} has no {kind!r} sweep (it has {', '.join(self.kinds)})")
        return self.values[name][self.kinds.index(kind)]


def read_sweep(path: str | Path) -> Sweep:
    """The :class:`Sweep` in a ``kind="sweep"`` file.

    Args:
        path: the file.

    Returns:
        The :class:`Sweep`.

    Raises:
        ValueError: not a sweep file, or one whose arrays do not fit its grid (or whose data live outside it).
    """
    attrs, arrays, values = read_grid(path, "sweep", {"kinds": 0})
    radii = arrays.get("radii")
    if radii is None or radii.ndim != 1 or len(radii) != arrays["computed"].shape[1]:
        raise ValueError(f"{path}: 'radii' does not match the sweep's grid")
    return Sweep(str(path), arrays["radii"], list(attrs["kinds"]), values, arrays["computed"].astype(bool), attrs)


__all__ = ["Sweep", "read_sweep"]
