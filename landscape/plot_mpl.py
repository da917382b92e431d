"""Paper-style matplotlib figures. Pure: data in, ``Figure`` out (no file I/O, no ``show``)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (headless: figures are saved, never shown)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .store import Surface, Sweep  # noqa: E402

SURFACE_2D_KINDS = ("contour", "contourf", "heatmap", "surface3d")
SPLIT_STYLE = {"train": "-", "test": "--"}


def surface_1d(s: Surface, *, log: bool = False) -> Figure:
    """Loss (left axis) and accuracy (right axis) along the direction, train solid and test dashed (Li et al.)."""
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    acc_ax = ax.twinx()
    for split in ("train", "test"):
        if f"{split}_loss" in s.values:
            ax.plot(s.xcoordinates, s.values[f"{split}_loss"], "b" + SPLIT_STYLE[split], label=f"{split} loss")
            acc_ax.plot(s.xcoordinates, s.values[f"{split}_acc"], "r" + SPLIT_STYLE[split], label=f"{split} accuracy")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(_axis_label(s, "x"))
    ax.set_ylabel("loss", color="b")
    acc_ax.set_ylabel("accuracy (%)", color="r")
    acc_ax.set_ylim(0, 100)
    lines = ax.get_lines() + acc_ax.get_lines()
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
    norm = LogNorm(vmin=max(float(Z.min()), 1e-12), vmax=float(Z.max())) if log else None
    if isinstance(levels, int):  # log-spaced for positive values: rings stay visible near the minimum
        lo, hi = float(Z.min()), float(Z.max())
        if lo > 0 and hi > lo:
            levels = np.geomspace(lo, hi, levels)
            norm = norm or LogNorm(vmin=lo, vmax=hi)  # colours follow the levels
        else:
            levels = np.linspace(lo, hi, levels)
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
        if "proj_xcoord" in s.extras:
            ax.plot(s.extras["proj_xcoord"], s.extras["proj_ycoord"], "r.-", markersize=4, linewidth=1, label="trajectory")
            ax.legend(loc="upper right", fontsize="small")
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
        mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
        (line,) = ax.plot(sw.radii, mean, marker="o", markersize=3, label=kind)
        ax.fill_between(sw.radii, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("perturbation radius")
    ax.set_ylabel("loss" if value == "loss" else "accuracy (%)")
    ax.legend(fontsize="small")
    ax.set_title(f"{sw.attrs.get('method', '')} {sw.attrs.get('model', '')} ({sw.attrs.get('split', '')})".strip())
    return fig


def _title(s: Surface) -> str:
    return f"{s.attrs.get('method', '')} {s.attrs.get('model', '')} {s.attrs.get('dataset', '')}".strip() or s.path


def _axis_label(s: Surface, axis: str) -> str:
    kind = s.attrs.get("directions")
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
