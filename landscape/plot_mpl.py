"""Paper-style matplotlib figures. Pure: data in, ``Figure`` out (no file I/O, no ``show``)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (headless: figures are saved, never shown)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from trainers.metrics import ece_from_bins  # noqa: E402

from .robustness import Robustness  # noqa: E402
from .store import Surface, Sweep  # noqa: E402

SURFACE_2D_KINDS = ("contour", "contourf", "heatmap", "surface3d")
SPLIT_STYLE = {"train": "-", "test": "--"}  # any other split: dotted


def _style(split: str) -> str:
    return SPLIT_STYLE.get(split, ":")


def surface_1d(s: Surface, *, log: bool = False) -> Figure:
    """Loss (left axis) and accuracy (right axis) along the direction, train solid and test dashed (Li et al.)."""
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    with_acc = [split for split in s.splits if s.has(split, "acc")]
    acc_ax = ax.twinx() if with_acc else None
    for split in s.splits:
        ax.plot(s.xcoordinates, s.values[f"{split}_loss"], "b" + _style(split), label=f"{split} loss")
        if acc_ax is not None and split in with_acc:
            acc_ax.plot(s.xcoordinates, s.values[f"{split}_acc"], "r" + _style(split), label=f"{split} accuracy")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(_axis_label(s, "x"))
    ax.set_ylabel("loss", color="b")
    if acc_ax is not None:
        acc_ax.set_ylabel("accuracy (%)", color="r")
        acc_ax.set_ylim(0, 100)
    lines = ax.get_lines() + (acc_ax.get_lines() if acc_ax is not None else [])
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper center", fontsize="small")
    ax.set_title(_title(s))
    return fig


def surface_2d(s: Surface, kind: str = "contour", *, value: str = "train_loss", log: bool = False,
               levels: int | np.ndarray = 30) -> Figure:
    """A 2-D surface as labelled contour lines, filled contours, heat map or 3-D surface; trajectory overlaid if stored."""
    if kind not in SURFACE_2D_KINDS:
        raise ValueError(f"unknown 2-D plot {kind!r}; choose from {', '.join(SURFACE_2D_KINDS)}")
    if s.dim != 2:
        raise ValueError(f"{s.path} is a 1-D surface")
    if value not in s.values:
        raise ValueError(f"{s.path} has no {value!r} (it has {', '.join(s.values)})")
    X, Y = np.meshgrid(s.xcoordinates, s.ycoordinates)
    Z = np.ma.masked_invalid(s.values[value])
    levels, norm = _levels_and_norm(float(Z.min()), float(Z.max()), levels, log)
    if kind == "surface3d":
        fig = plt.figure(figsize=(5.5, 4.5), layout="constrained")
        ax = fig.add_subplot(projection="3d")  # not Axes3D(fig): blank on matplotlib >= 3.6
        ax.plot_surface(X, Y, np.log10(Z) if log else Z, cmap="viridis", linewidth=0, antialiased=True)
        ax.set_zlabel(f"log10 {value}" if log else value)
    else:
        fig, ax = plt.subplots(figsize=(5, 4.2), layout="constrained")
        if kind == "contour":
            cs = ax.contour(X, Y, Z, levels=levels, cmap="viridis", norm=norm, linewidths=0.8)
            ax.clabel(cs, cs.levels[::4], inline=True, fontsize=7, fmt="%.3g")
        elif kind == "contourf":
            cs = ax.contourf(X, Y, Z, levels=levels, cmap="viridis", norm=norm)
            fig.colorbar(cs, ax=ax, label=value, shrink=0.85, ticks=cs.levels[::5], format="%.3g")
        else:
            mesh = ax.pcolormesh(X, Y, Z, cmap="viridis", norm=norm, shading="auto")
            fig.colorbar(mesh, ax=ax, label=value, shrink=0.85)
        ax.set_aspect("equal" if _similar_ranges(s) else "auto")
        _trajectory(ax, s)
    ax.set_xlabel(_axis_label(s, "x"))
    ax.set_ylabel(_axis_label(s, "y"))
    ax.set_title(_title(s) + f" - {value}")
    return fig


def hessian_spectrum(eigenvalues: np.ndarray | None, grid: np.ndarray | None = None, density: np.ndarray | None = None,
                     *, title: str = "") -> Figure:
    """Top eigenvalues (stems) and, when given, the spectral density on a log scale."""
    panels = (eigenvalues is not None) + (density is not None)
    if not panels:
        raise ValueError("nothing to plot: no eigenvalues and no density")
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.4), layout="constrained", squeeze=False)
    i = 0
    if eigenvalues is not None:
        ax = axes[0, i]
        ranks = np.arange(1, len(eigenvalues) + 1)
        ax.stem(ranks, eigenvalues)
        ax.set_xticks(ranks)
        ax.set_xlabel("rank")
        ax.set_ylabel("eigenvalue")
        ax.set_title("top Hessian eigenvalues")
        i += 1
    if density is not None:
        ax = axes[0, i]
        ax.semilogy(grid, np.maximum(density, 1e-12))
        ax.set_ylim(bottom=max(1e-8, float(np.max(density)) * 1e-8))
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density (log scale)")
        ax.set_title("spectral density (SLQ)")
    if title:
        fig.suptitle(title)
    return fig


def sweep_curves(sw: Sweep, *, value: str = "loss", log: bool = False) -> Figure:
    """Mean loss (or accuracy) against perturbation radius, one line per kind, +-1 std band."""
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    for kind in sw.kinds:
        _band(ax, sw, kind, value, kind)
    _sweep_axes(ax, value, log)
    ax.legend(fontsize="small")
    ax.set_title(f"{sw.attrs.get('method', '')} {sw.attrs.get('model', '')} ({sw.attrs.get('split', '')})".strip())
    return fig


def reliability_diagram(curves: list[tuple[str, dict]], *, title: str = "") -> Figure:
    """Reliability diagrams (Guo et al.), one column per model: accuracy per confidence bin as bars with the gap
    to the diagonal shaded, and above it the share of predictions in each bin (log scale).

    ``curves``: ``(label, bins)`` with ``bins`` from :func:`trainers.metrics.reliability`.
    """
    n = len(curves)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n + 0.4, 4.6), height_ratios=(1, 3), sharex=True, sharey="row",
                             layout="constrained", squeeze=False)
    for (hist, ax), (label, rel) in zip(axes.T, curves):
        edges, full = rel["edges"], rel["count"] > 0
        left, width = edges[:-1][full], np.diff(edges)[full]
        acc, conf = rel["accuracy"][full], rel["confidence"][full]
        hist.bar(left, rel["count"][full] / rel["count"].sum(), width, align="edge", color="0.6", edgecolor="k", linewidth=0.4)
        hist.set(yscale="log", title=label)
        ax.plot([0, 1], [0, 1], color="0.4", linestyle=":", linewidth=1)
        ax.bar(left, acc, width, align="edge", color="C0", edgecolor="k", linewidth=0.4, label="accuracy")
        ax.bar(left, conf - acc, width, bottom=acc, align="edge", color="C3", alpha=0.35, hatch="//", edgecolor="C3",
               linewidth=0.4, label="gap to confidence")
        ax.text(0.04, 0.93, f"ECE {ece_from_bins(rel):.4f}", transform=ax.transAxes, fontsize="small",
                bbox={"facecolor": "white", "edgecolor": "0.7"})
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence")
    axes[0, 0].set_ylabel("share")
    axes[1, 0].set_ylabel("accuracy")
    axes[1, 0].legend(fontsize="x-small", loc="center left")
    if title:
        fig.suptitle(title)
    return fig


def compare_slices(items: list[tuple[str, Surface]], *, log: bool = False) -> Figure:
    """1-D loss and accuracy of several runs on shared axes: one colour per run, train solid, test dashed."""
    fig, (ax, acc_ax) = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained", sharex=True)
    for i, (label, s) in enumerate(items):
        for split in s.splits:
            ax.plot(s.xcoordinates, s.values[f"{split}_loss"], f"C{i}" + _style(split), label=f"{label} {split}")
            if s.has(split, "acc"):
                acc_ax.plot(s.xcoordinates, s.values[f"{split}_acc"], f"C{i}" + _style(split), label=f"{label} {split}")
    if log:
        ax.set_yscale("log")
    ax.set(xlabel=_axis_label(items[0][1], "x"), ylabel="loss", title="loss along the x direction")
    acc_ax.set(xlabel=_axis_label(items[0][1], "x"), ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    ax.legend(fontsize="x-small")
    return fig


def compare_sweeps(items: list[tuple[str, Sweep]], *, value: str = "loss", log: bool = False) -> Figure:
    """One panel per perturbation kind (each its own y scale), one line per run with its +-1 std band."""
    kinds = list(dict.fromkeys(k for _, sw in items for k in sw.kinds))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), layout="constrained", squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for label, sw in items:
            if kind in sw.kinds:
                _band(ax, sw, kind, value, label)
        _sweep_axes(ax, value, log)
        ax.set_title(kind)
    axes[0, 0].legend(fontsize="small")
    return fig


def compare_spectra(items: list[tuple[str, dict]]) -> Figure:
    """Top Hessian eigenvalues by rank and, for the runs that have one, the spectral densities (log scale)."""
    dens = [(label, a) for label, a in items if "density" in a]
    fig, axes = plt.subplots(1, 1 + bool(dens), figsize=(4.8 * (1 + bool(dens)), 3.4), layout="constrained", squeeze=False)
    ax = axes[0, 0]
    for label, a in items:
        if "eigenvalues" in a:
            ax.plot(np.arange(1, len(a["eigenvalues"]) + 1), a["eigenvalues"], marker="o", label=label)
    ax.set(xlabel="rank", ylabel="eigenvalue", title="top Hessian eigenvalues")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")
    if dens:
        ax = axes[0, 1]
        for label, a in dens:
            ax.semilogy(a["density_grid"], np.maximum(a["density"], 1e-12), label=label)
        ax.set_ylim(bottom=max(1e-8, max(float(np.max(a["density"])) for _, a in dens) * 1e-8))
        ax.set(xlabel="eigenvalue", ylabel="density (log scale)", title="spectral density (SLQ)")
    return fig


def compare_surfaces(items: list[tuple[str, Surface]], *, value: str = "train_loss", log: bool = False,
                     levels: int = 30) -> Figure:
    """2-D surfaces side by side as filled contours on one colour scale (same levels, one colour bar)."""
    zs = [np.ma.masked_invalid(s.values[value]) for _, s in items]
    levels, norm = _levels_and_norm(min(float(z.min()) for z in zs), max(float(z.max()) for z in zs), levels, log)
    fig, axes = plt.subplots(1, len(items), figsize=(3.4 * len(items) + 1, 3.4), layout="constrained", squeeze=False,
                             sharex=True, sharey=True)
    for ax, (label, s), z in zip(axes[0], items, zs):
        cs = ax.contourf(s.xcoordinates, s.ycoordinates, z, levels=levels, cmap="viridis", norm=norm, extend="both")
        _trajectory(ax, s)
        ax.set(title=label, xlabel=_axis_label(s, "x"))
        ax.set_aspect("equal" if _similar_ranges(s) else "auto")
    axes[0, 0].set_ylabel(_axis_label(items[0][1], "y"))
    fig.colorbar(cs, ax=axes[0].tolist(), label=value, shrink=0.85, ticks=cs.levels[::5], format="%.3g")
    return fig


def _levels_and_norm(lo: float, hi: float, levels: int | np.ndarray, log: bool):
    """Contour levels and colour norm: log-spaced for positive values so rings stay visible near the minimum."""
    norm = LogNorm(vmin=max(lo, 1e-12), vmax=hi) if log else None
    if isinstance(levels, int):
        if lo > 0 and hi > lo:
            levels = np.geomspace(lo, hi, levels)
            norm = norm or LogNorm(vmin=lo, vmax=hi)  # colours follow the levels
        else:
            levels = np.linspace(lo, hi, levels)
    return levels, norm


def _trajectory(ax, s: Surface) -> None:
    if "proj_xcoord" in s.extras:
        ax.plot(s.extras["proj_xcoord"], s.extras["proj_ycoord"], "r.-", markersize=4, linewidth=1, label="trajectory")
        ax.legend(loc="upper right", fontsize="small")


def _band(ax, sw: Sweep, kind: str, value: str, label: str) -> None:
    mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
    (line,) = ax.plot(sw.radii, mean, marker="o", markersize=3, label=label)
    ax.fill_between(sw.radii, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def _sweep_axes(ax, value: str, log: bool) -> None:
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("perturbation radius")
    ax.set_ylabel("loss" if value == "loss" else "accuracy (%)")


def _title(s: Surface) -> str:
    return f"{s.attrs.get('method', '')} {s.attrs.get('model', '')} {s.attrs.get('dataset', '')}".strip() or s.path


def _axis_label(s: Surface, axis: str) -> str:
    kind = s.attrs.get("directions")
    axis = s.attrs.get("slice_axis", axis)  # a slice of a 2-D surface runs along its own axis
    if kind == "pca" and "explained_variance_ratio_" in s.extras:
        i = 0 if axis == "x" else 1
        return f"PC{i + 1}: {100 * s.extras['explained_variance_ratio_'][i]:.1f} %"
    if kind == "hessian":
        return f"eigenvector {1 if axis == 'x' else 2}"
    if kind == "interpolation":
        return "interpolation (0: A, 1: B)"
    return f"{axis} direction"


def _similar_ranges(s: Surface) -> bool:
    rx = np.ptp(s.xcoordinates)
    ry = np.ptp(s.ycoordinates)
    return 0.5 < rx / ry < 2 if ry else False


def robustness_by_severity(items: list[tuple[str, Robustness]]) -> Figure:
    """Error and ECE per severity pooled over corruptions (0 = clean), one line per run (DAMP paper Fig. 3/4)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
    for label, r in items:
        sev = [0, *r.severities]
        for ax, metric in zip(axes, ("error", "ece")):
            ax.plot(sev, [r.clean(metric), *r.by_severity(metric)], marker="o", label=label)
    for ax, name in zip(axes, ("error (%)", "ECE")):
        ax.set(xlabel="severity (0 = clean)", ylabel=name, title=f"{name} pooled over corruptions")
        ax.set_xticks(range(6))
    axes[0].legend(fontsize="small")
    return fig


def corruption_table(labels: list[str], corruptions: list[str], values: np.ndarray, *, title: str,
                     center: float | None = None) -> Figure:
    """A (rows x corruptions) heat map with the numbers written in: errors per severity, or CE per run
    (DAMP paper Fig. 5; ``center=1`` colours CE below 1 blue, above 1 red)."""
    fig, ax = plt.subplots(figsize=(0.55 * len(corruptions) + 2.5, 0.45 * len(labels) + 1.8), layout="constrained")
    if center is not None:  # two slopes: ratios below and above 1 each use their half of the colour map
        norm = TwoSlopeNorm(center, min(float(np.nanmin(values)), center - 1e-3), max(float(np.nanmax(values)), center + 1e-3))
        mesh = ax.imshow(values, cmap="RdBu_r", norm=norm, aspect="auto")
    else:
        mesh = ax.imshow(values, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}" if center is not None else f"{v:.1f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(corruptions)), corruptions, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(mesh, ax=ax, shrink=0.8)
    ax.set_title(title)
    return fig
