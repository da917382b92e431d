"""Perturbation sweeps read back: loss and accuracy per (kind, radius)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .results import read_grid


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


def read_sweep(path: str | Path) -> Sweep:
    attrs, arrays, values = read_grid(path, "sweep", {"kinds": 0})
    radii = arrays.get("radii")
    if radii is None or radii.ndim != 1 or len(radii) != arrays["computed"].shape[1]:
        raise ValueError(f"{path}: 'radii' does not match the sweep's grid")
    return Sweep(str(path), arrays["radii"], list(attrs["kinds"]), values, arrays["computed"].astype(bool), attrs)
