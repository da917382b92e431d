"""Which figures a result file gets, by its kind: the one catalogue ``landscape plot`` and the explorer draw from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import Surface, Sweep
from ..io.hessian import Hessian
from ..io.robustness import Robustness
from . import Renderer

Calibration = tuple[str, dict]  # (label, reliability bins) of a checkpoint's test predictions


def figure_file(stem: str, suffix: str, fmt: str) -> str:
    """``stem_suffix.fmt`` without a word said twice where they meet (``seed0_sweep`` + ``sweep_loss`` is
    ``seed0_sweep_loss``, not ``seed0_sweep_sweep_loss``)."""
    head, tail = stem.split("_"), suffix.split("_")
    for n in range(min(len(head), len(tail)), 0, -1):
        if head[-n:] == tail[:n]:
            tail = tail[n:]
            break
    return "_".join(head + tail) + f".{fmt}"


def figures_for(data: Surface | Hessian | Sweep | Robustness | Calibration, log: bool, lib: Renderer) -> dict:
    """``{suffix: figure}`` for one result (as :func:`landscape.io.read` gives it), by its kind (``lib``:
    :mod:`.mpl` or :mod:`.plotly`)."""
    if isinstance(data, Surface):
        if data.dim == 1:
            return {"1d": lib.surface_1d(data, log=log)}
        return {
            f"{value}_{k}": lib.surface_2d(data, k, value=value, log=log)
            for value in [v for v in data.values if v.endswith("_loss")]
            for k in lib.SURFACE_2D_KINDS
        }
    if isinstance(data, Hessian):
        arrays = data.arrays()
        title = f"{data.attrs.get('label') or data.attrs.get('method', '')} {Path(data.path or '').stem}".strip()
        figs = {}
        if "eigenvalues" in arrays or "density" in arrays:
            figs["spectrum"] = lib.hessian_spectrum(
                arrays.get("eigenvalues"), arrays.get("density_grid"), arrays.get("density"), title=title
            )
        if data.batch_eigenvalues is not None:
            top = data.eigenvalues[0] if data.eigenvalues is not None and data.attrs.get("which") == "largest" else None
            figs["batches"] = lib.batch_eigenvalues(
                data.batch_eigenvalues, int(data.attrs.get("batch_size", 0)), top, title=title
            )
        return figs or {"spectrum": lib.hessian_spectrum(None)}  # nothing to draw: its one-line error
    if isinstance(data, Sweep):
        figs = {"sweep_loss": lib.sweep_curves(data, log=log)}
        if np.isfinite(data.values["acc_mean"]).any():  # a problem with an accuracy
            figs["sweep_acc"] = lib.sweep_curves(data, value="acc")
        return figs
    if isinstance(data, Robustness):
        label = f"{data.attrs.get('method', '')} {Path(data.path).stem}".strip()
        figs = {
            "by_severity": lib.robustness_by_severity([(label, data)]),
            "errors": lib.corruption_table(
                [f"severity {s}" for s in data.severities],
                data.corruptions,
                data.table().T,
                title=f"{label}: test error (%)",
            ),
        }
        if data.has_baseline:
            figs["ce"] = lib.corruption_table(
                [label],
                [*data.corruptions, "clean", "mCE"],
                np.array([[*data.ce(), data.relative_clean_error(), data.mce()]]),
                title="corruption error relative to the baseline",
                center=1.0,
            )
        return figs
    label, rel = data
    return {"reliability": lib.reliability_diagram([(label, rel)], title=f"reliability: {label} (test)")}


__all__ = ["figures_for"]
