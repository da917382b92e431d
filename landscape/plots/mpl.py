"""Paper-style matplotlib figures. Pure: data in, ``Figure`` out (no file I/O, no ``show``).

Every figure follows :mod:`landscape.plots.style`: Okabe-Ito colours with a marker and a dash per
method, human labels in real units, legends outside the data, equal aspect for 2-D surfaces,
losses on log scales where they span decades, and sweeps as the loss increase over the
unperturbed loss with each kind's own radius unit.
"""

from __future__ import annotations

import io
from typing import IO, Any, Literal

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from landscape.trainers.metrics import ece_from_bins

from ..io import Surface, Sweep
from ..io.robustness import Robustness, severity_curves
from .style import (
    DIVERGING,
    PALETTE,
    SEQUENTIAL,
    SPLIT_DASHES,
    THRESHOLD_LABELS,
    TRAINING_PANELS,
    axis_label,
    band_limits,
    human,
    log_ticks,
    path_label,
    radius_label,
    run_title,
    series,
    surface_title,
    text_colour,
    wants_log,
)

SURFACE_2D_KINDS: tuple[str, ...] = ("contour", "contourf", "heatmap", "surface3d")


TEXT_AS_TEXT: dict[str, Any] = {
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}  # SVG/PDF text stays text: editable, searchable


def _figure(figsize: tuple[float, float], layout: Literal["constrained", "tight"] = "constrained") -> Figure:
    """A figure of its own Agg canvas, outside pyplot: no global backend switch, no figure manager to close."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _subplots(*grid: int, figsize: tuple[float, float], layout: Literal["constrained", "tight"] = "constrained", **kw):
    fig = _figure(figsize, layout)
    return fig, fig.subplots(*grid, **kw)


def save(fig: Figure, target: str | IO[bytes], fmt: str, dpi: int = 150) -> None:
    """Write ``fig`` as PNG, SVG or PDF (the one way every caller saves a figure).

    Args:
        fig: the figure.
        target: a path or a binary file.
        fmt: ``"png"``, ``"svg"`` or ``"pdf"``.
        dpi: resolution of a PNG.
    """
    with matplotlib.rc_context(TEXT_AS_TEXT):  # type: ignore[arg-type]
        fig.savefig(target, format=fmt, dpi=dpi)


def to_bytes(fig: Figure, fmt: str, dpi: int = 150) -> bytes:
    """The file ``fig`` makes as PNG, SVG or PDF, in memory (written atomically by the caller).

    Args:
        fig: the figure.
        fmt: ``"png"``, ``"svg"`` or ``"pdf"``.
        dpi: resolution of a PNG.

    Returns:
        The file's bytes.
    """
    buf = io.BytesIO()
    save(fig, buf, fmt, dpi)
    return buf.getvalue()


def _dash(split: str) -> str:
    return SPLIT_DASHES.get(split, ":")


def _legend_outside(ax, source=None, **kw) -> None:
    """The legend (of ``source``'s lines, default ``ax``'s) to the right of the axes, never over the data."""
    handles, labels = (source or ax).get_legend_handles_labels()
    if handles:
        ax.legend(
            handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize="small", **kw
        )


def surface_1d(s: Surface, *, log: bool | None = None) -> Figure:
    """Loss (left axis) and accuracy (right axis) of every split along a 1-D surface (Li et al.), train solid,
    test dashed.

    Args:
        s: the surface.
        log: losses on a log axis (``None``: when they span more than two decades, so the basin stays visible).

    Returns:
        A matplotlib ``Figure``.
    """
    fig, ax = _subplots(figsize=(5.6, 3.6), layout="constrained")
    with_acc = [split for split in s.splits if s.has(split, "acc")]
    acc_ax = ax.twinx() if with_acc else None
    for split in s.splits:
        for value, axes, color in (("loss", ax, PALETTE[0]), ("acc", acc_ax, PALETTE[1])):
            if axes is not None and s.has(split, value):
                key = f"{split}_{value}"
                axes.plot(s.xcoordinates, s.values[key], color=color, linestyle=_dash(split), label=human(key))
                if key in s.spread:  # over seeds of directions: +-1 std
                    lo, hi = s.values[key] - s.spread[key], s.values[key] + s.spread[key]
                    axes.fill_between(s.xcoordinates, lo, hi, color=color, alpha=0.18, linewidth=0)
    if log or (log is None and wants_log(*(s.values[f"{sp}_loss"] for sp in s.splits))):
        ax.set_yscale("log")
    ax.set_xlabel(axis_label(s, "x"))
    ax.set_ylabel("loss", color=PALETTE[0])
    if acc_ax is not None:
        acc_ax.set_ylabel("accuracy (%)", color=PALETTE[1])
        acc_ax.set_ylim(0, 100)
    lines = ax.get_lines() + (acc_ax.get_lines() if acc_ax is not None else [])
    fig.legend(
        lines, [ln.get_label() for ln in lines], loc="outside lower center", ncol=min(4, len(lines)), fontsize="small"
    )
    ax.set_title(surface_title(s))
    return fig


def surface_2d(
    s: Surface, kind: str = "contour", *, value: str = "train_loss", log: bool = False, levels: int | np.ndarray = 30
) -> Figure:
    """A 2-D surface on equal axes, its trajectory overlaid if stored; on a log scale the colour bar, axes and
    hovers read in real loss units.

    Args:
        s: the surface.
        kind: one of ``SURFACE_2D_KINDS`` (contour lines, filled contours, heat map or 3-D surface).
        value: the value drawn, e.g. ``train_loss``, ``test_acc``.
        log: colours (or the y-axis) follow log10 of the loss (positive losses).
        levels: the number of contour levels (or the levels themselves).

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ValueError: an unknown ``kind``, a 1-D surface, or a value the surface lacks.
    """
    if kind not in SURFACE_2D_KINDS:
        raise ValueError(f"unknown 2-D plot {kind!r}; choose from {', '.join(SURFACE_2D_KINDS)}")
    if s.ycoordinates is None:
        raise ValueError(f"{s.path} is a 1-D surface")
    if value not in s.values:
        raise ValueError(f"{s.path} has no {value!r} (it has {', '.join(s.values)})")
    X, Y = np.meshgrid(s.xcoordinates, s.ycoordinates)
    Z = np.ma.masked_invalid(s.values[value])
    levels, norm = _levels_and_norm(float(Z.min()), float(Z.max()), levels, log)
    label = human(value)
    if kind == "surface3d":
        fig = _figure(figsize=(5.5, 4.5))
        ax = fig.add_subplot(projection="3d")  # not Axes3D(fig): blank on matplotlib >= 3.6
        logged = isinstance(norm, LogNorm)
        ax.plot_surface(X, Y, np.log10(Z) if logged else Z, cmap=SEQUENTIAL, linewidth=0, antialiased=True)
        if logged:  # heights are log10 values; the axis reads in real units
            ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10**v:.3g}"))
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):  # a few ticks: the 3-D axes are short, their labels long
            axis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_zlabel(label + (" (log scale)" if logged else ""), labelpad=10)
        ax.set_box_aspect(None, zoom=0.85)  # room for the labels inside the figure
        ax.xaxis.labelpad = ax.yaxis.labelpad = 14  # the axis names clear of the tick labels
    else:
        fig, ax = _subplots(figsize=(5.4, 4.4), layout="constrained")
        if kind == "contour":
            cs = ax.contour(X, Y, Z, levels=levels, cmap=SEQUENTIAL, norm=norm, linewidths=0.8)
            ax.clabel(cs, cs.levels[::4], inline=True, fontsize=7, fmt="%.3g")
        elif kind == "contourf":
            cs = ax.contourf(X, Y, Z, levels=levels, cmap=SEQUENTIAL, norm=norm)
            _colorbar(fig, cs, ax, label, norm)
        else:
            mesh = ax.pcolormesh(X, Y, Z, cmap=SEQUENTIAL, norm=norm, shading="auto")
            _colorbar(fig, mesh, ax, label, norm)
        ax.set_aspect("equal")  # one unit of x is one unit of y: the basin's true shape
        for axis in (ax.xaxis, ax.yaxis):  # labels that stay apart on the square plot
            axis.set_major_locator(MaxNLocator(nbins=5))
        _trajectory(ax, s)
    ax.set_xlabel(axis_label(s, "x"))
    ax.set_ylabel(axis_label(s, "y"))
    ax.set_title(f"{surface_title(s)}: {label}")
    return fig


def _colorbar(fig: Figure, mappable, ax, label: str, norm) -> None:
    bar = fig.colorbar(mappable, ax=ax, label=label, shrink=0.85)
    if isinstance(norm, LogNorm):  # round values in real units, not 10^x or a crowd of level labels
        ticks = [float(t) for t in log_ticks(float(norm.vmin or 0), float(norm.vmax or 0))]  # vmin, vmax set
        bar.set_ticks(ticks)
        bar.set_ticklabels([f"{t:.3g}" for t in ticks])
        bar.minorticks_off()


def hessian_spectrum(
    eigenvalues: np.ndarray | None,
    grid: np.ndarray | None = None,
    density: np.ndarray | None = None,
    *,
    title: str = "",
) -> Figure:
    """The top eigenvalues by rank and, where given, the spectral density (log scale).

    Args:
        eigenvalues: the top eigenvalues (``None``: none computed).
        grid: the density's grid (``None``: no density).
        density: the spectral density on ``grid``.
        title: the figure's title.

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ValueError: neither eigenvalues nor a density to draw.
    """
    panels = (eigenvalues is not None) + (density is not None)
    if not panels:
        raise ValueError("nothing to plot: no eigenvalues and no density")
    fig, axes = _subplots(1, panels, figsize=(4.5 * panels, 3.4), layout="constrained", squeeze=False)
    i = 0
    if eigenvalues is not None:
        ax = axes[0, i]
        ranks = np.arange(1, len(eigenvalues) + 1)
        ax.stem(ranks, eigenvalues, linefmt=PALETTE[0], markerfmt="o", basefmt=" ")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.set(xlabel="rank", ylabel="eigenvalue", title="top Hessian eigenvalues")
        i += 1
    if density is not None:
        ax = axes[0, i]
        ax.semilogy(grid, np.maximum(density, 1e-12), color=PALETTE[0])
        ax.set_ylim(bottom=max(1e-8, float(np.max(density)) * 1e-8))
        ax.set(xlabel="eigenvalue", ylabel="density (log scale)", title="spectral density (SLQ)")
    if title:
        fig.suptitle(title)
    return fig


def batch_eigenvalues(values: np.ndarray, batch_size: int, full: float | None = None, *, title: str = "") -> Figure:
    """How-do-vits-work's per-minibatch histogram: the top Hessian eigenvalue on each of several batches, with the
    whole split's top eigenvalue as a line (a batch's curvature is a noisy sample of the split's).

    Args:
        values: the top eigenvalue per batch.
        batch_size: the examples per batch (in the axis label).
        full: the whole split's top eigenvalue (``None``: not drawn).
        title: the figure's title.

    Returns:
        A matplotlib ``Figure``.
    """
    fig, ax = _subplots(1, 1, figsize=(4.8, 3.4))
    ax.hist(values, bins=min(30, max(5, len(values) // 3)), color=PALETTE[0], alpha=0.8, label=f"{len(values)} batches")
    if full is not None:
        ax.axvline(full, color=PALETTE[1], linestyle="--", label="whole split")
    ax.set(xlabel=f"top eigenvalue of a batch of {batch_size}", ylabel="batches", title=title or "per-batch sharpness")
    ax.legend(frameon=False)
    return fig


def sweep_curves(sw: Sweep, *, value: str = "loss", log: bool = False) -> Figure:
    """One panel per perturbation kind, each with its radius unit and range: the loss increase over the unperturbed
    loss (or the accuracy), the mean over trials with its +-1 std band.

    Args:
        sw: the sweep.
        value: ``"loss"`` (the increase) or ``"acc"``.
        log: the y-axis on a log scale.

    Returns:
        A matplotlib ``Figure``.
    """
    return compare_sweeps([(run_title(sw.attrs) or "sweep", sw)], value=value, log=log, legend=False)


def reliability_diagram(curves: list[tuple[str, dict]], *, title: str = "") -> Figure:
    """Reliability diagrams (Guo et al.), one column per model: accuracy per confidence bin with the gap to the
    diagonal, and the share of predictions in each bin.

    Args:
        curves: ``(label, bins)`` pairs, ``bins`` from :func:`landscape.trainers.metrics.reliability`.
        title: the figure's title.

    Returns:
        A matplotlib ``Figure``.
    """
    n = len(curves)
    fig, axes = _subplots(
        2,
        n,
        figsize=(3.2 * n + 1.6, 4.6),
        height_ratios=(1, 3),
        sharex=True,
        sharey="row",
        layout="constrained",
        squeeze=False,
    )
    for (hist, ax), (label, rel) in zip(axes.T, curves):
        edges, full = rel["edges"], rel["count"] > 0
        left, width = edges[:-1][full], np.diff(edges)[full]
        acc, conf = rel["accuracy"][full], rel["confidence"][full]
        hist.bar(
            left,
            rel["count"][full] / rel["count"].sum(),
            width,
            align="edge",
            color="0.6",
            edgecolor="k",
            linewidth=0.4,
        )
        hist.set(yscale="log", title=label)
        ax.plot([0, 1], [0, 1], color="0.4", linestyle=":", linewidth=1, label="perfect calibration")
        ax.bar(left, acc, width, align="edge", color=PALETTE[0], edgecolor="k", linewidth=0.4, label="accuracy")
        ax.bar(
            left,
            conf - acc,
            width,
            bottom=acc,
            align="edge",
            color=PALETTE[1],
            alpha=0.35,
            hatch="//",
            edgecolor=PALETTE[1],
            linewidth=0.4,
            label="gap to confidence",
        )
        ax.text(
            0.04,
            0.93,
            f"ECE {ece_from_bins(rel):.4f}",
            transform=ax.transAxes,
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "0.7"},
        )
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    axes[0, 0].set_ylabel("share")
    axes[1, 0].set_ylabel("accuracy")
    _legend_outside(axes[1, -1])
    if title:
        fig.suptitle(title)
    return fig


def compare_slices(items: list[tuple[str, Surface]], *, log: bool | None = None, title: str | None = None) -> Figure:
    """1-D loss and accuracy of several runs on shared axes: a colour and marker per run, train solid, test dashed.

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        log: losses on a log axis (``None``: when they span more than two decades, so the basin stays visible).
        title: what the lines are (default: slices along the x direction).

    Returns:
        A matplotlib ``Figure``.
    """
    fig, (ax, acc_ax) = _subplots(1, 2, figsize=(10.5, 3.8), layout="constrained", sharex=True)
    for i, (label, s) in enumerate(items):
        style = series(i)
        for split in s.splits:
            for axis, metric in ((ax, "loss"), (acc_ax, "acc")):
                if not s.has(split, metric):
                    continue
                name = f"{split}_{metric}"
                _split_line(
                    axis,
                    s.xcoordinates,
                    s.values[name],
                    s.spread.get(name),
                    f"{label}, {split}",
                    split,
                    style,
                    markersize=4,
                    floor=1e-12 if metric == "loss" else 0.0,
                )
    if log or (log is None and wants_log(*(s.values[f"{sp}_loss"] for _, s in items for sp in s.splits))):
        ax.set_yscale("log")
    ax.set(xlabel=axis_label(items[0][1], "x"), ylabel="loss", title=f"loss {title or 'along the x direction'}")
    acc_ax.set(xlabel=axis_label(items[0][1], "x"), ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    _legend_outside(acc_ax)
    return fig


def _split_line(ax, x, y, spread, label: str, split: str, style: dict, *, markersize: int, floor: float) -> None:
    """One run's (or group's) curve of one split, train solid and test dashed, with its +-1 std band (over
    seeds) where given, kept above ``floor`` (a loss band must stay drawable on a log axis)."""
    (line,) = ax.plot(
        x,
        y,
        color=style["color"],
        marker=style["marker"],
        markevery=max(1, len(x) // 8),
        markersize=markersize,
        linestyle=_dash(split),
        label=label,
    )
    if spread is not None:
        ax.fill_between(x, np.maximum(y - spread, floor), y + spread, color=line.get_color(), alpha=0.18, linewidth=0)


def training_curves(items: list[tuple[str, dict]]) -> Figure:
    """Loss, error and ECE per epoch: a colour and marker per run or group, train solid, test dashed, +-1 std bands.

    Args:
        items: ``(label, curves)`` pairs: :func:`landscape.groups.history_curves`, or their mean over seeds with
        ``*_std``.

    Returns:
        A matplotlib ``Figure``.
    """
    fig, axes = _subplots(1, 3, figsize=(12.5, 3.5), layout="constrained")
    for i, (label, c) in enumerate(items):
        style = series(i)
        for ax, (_, keys) in zip(axes, TRAINING_PANELS):
            for key in keys:
                if key not in c or not np.isfinite(c[key]).any():
                    continue
                split = key.split("_")[0]
                _split_line(
                    ax,
                    c["epoch"],
                    c[key],
                    c.get(f"{key}_std"),
                    f"{label}, {split}",
                    split,
                    style,
                    markersize=3,
                    floor=1e-12 if key != "test_ece" else 0.0,
                )
    for ax, (title, keys) in zip(axes, TRAINING_PANELS):
        ax.set(xlabel="epoch", ylabel=title, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        if keys[0] != "test_ece" and wants_log(*(c[k] for _, c in items for k in keys if k in c)):
            ax.set_yscale("log")
    _legend_outside(axes[-1], source=axes[0])  # the loss panel holds every run's train and test line
    return fig


def sharpness_curves(items: list[tuple[str, dict]]) -> Figure:
    """The edge-of-stability figure (Cohen et al. 2021, figure 1): the loss on the tracked data and the top Hessian
    eigenvalue (and Adam's preconditioned one) against the step, each run's stability threshold dotted, +-1 std
    bands over seeds.

    Args:
        items: ``(label, curves)`` pairs: :func:`landscape.groups.curvature_curves` of a tracker's history, or their
            mean over seeds with ``*_std``.

    Returns:
        A matplotlib ``Figure``.
    """
    fig, (loss_ax, sharp_ax) = _subplots(1, 2, figsize=(10.5, 3.6), layout="constrained", sharex=True)
    for i, (label, c) in enumerate(items):
        style = {**series(i), "marker": None}
        _split_line(loss_ax, c["step"], c["loss"], c.get("loss_std"), label, "train", style, markersize=0, floor=1e-12)
        for key, what, dash in (("sharpness", "top eigenvalue", "train"), ("preconditioned", "preconditioned", "test")):
            if np.isfinite(c.get(key, np.nan)).any():  # the preconditioned sharpness dashed
                _split_line(sharp_ax, c["step"], c[key], c.get(f"{key}_std"), f"{label}: {what}", dash, style,
                            markersize=0, floor=0.0)  # fmt: skip
        for key, text in THRESHOLD_LABELS.items():
            finite = np.asarray(c.get(key, [np.nan]), float)
            finite = finite[np.isfinite(finite)]
            if len(finite):  # constant under a constant learning rate; its last value otherwise
                sharp_ax.axhline(finite[-1], color=style["color"], linestyle=":", linewidth=1, label=f"{label}: {text}")
    if wants_log(*(c["loss"] for _, c in items)):
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss on the tracked data")
    sharp_ax.set(xlabel="step", ylabel="sharpness", title="sharpness")
    _legend_outside(sharp_ax)
    return fig


def correlation_scatter(
    points: dict[str, list[tuple[str, float, float]]], taus: dict[str, float], *, target: str = "gap"
) -> Figure:
    """One panel per flatness measure: each run's measure against its generalization ``target``, coloured by group,
    Kendall's τ in the title (Andriushchenko et al.'s figure).

    Args:
        points: ``{measure: [(group, measure value, target value), ...]}``.
        taus: ``{measure: Kendall's τ}``.
        target: the y axis's name.

    Returns:
        A matplotlib ``Figure``.
    """
    cols = min(3, len(points))
    rows = -(-len(points) // cols)
    fig, axes = _subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    groups = list(dict.fromkeys(g for pts in points.values() for g, _, _ in pts))
    for ax, (measure, pts) in zip(axes.flat, points.items()):
        for i, group in enumerate(groups):
            xy = np.array([(x, y) for g, x, y in pts if g == group]).reshape(-1, 2)
            style = series(i)
            ax.scatter(xy[:, 0], xy[:, 1], color=style["color"], marker=style["marker"], s=22, label=group)
        xs = np.array([x for _, x, _ in pts])
        if len(xs) and xs.min() > 0 and xs.max() / xs.min() > 100:
            ax.set_xscale("log")
        ax.set(xlabel=measure, ylabel=f"{target} (%)", title=f"τ = {taus[measure]:+.2f}")
    for ax in list(axes.flat)[len(points) :]:
        ax.set_visible(False)
    _legend_outside(list(axes.flat)[min(len(points), cols) - 1])
    return fig


def compare_sweeps(
    items: list[tuple[str, Sweep]], *, value: str = "loss", log: bool = False, legend: bool = True
) -> Figure:
    """One panel per perturbation kind; one line per run (or group mean): the loss increase over the unperturbed
    loss with a +-1 std band (over trials, or over seeds for a group).

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        value: ``"loss"`` (the increase) or ``"acc"``.
        log: the y-axis on a log scale.
        legend: draw the legend.

    Returns:
        A matplotlib ``Figure``.
    """
    kinds = list(dict.fromkeys(k for _, sw in items for k in sw.kinds))
    fig, axes = _subplots(
        1, len(kinds), figsize=(3.9 * len(kinds) + (1.6 if legend else 0.4), 3.5), layout="constrained", squeeze=False
    )
    for ax, kind in zip(axes[0], kinds):
        radii = next(sw.radii for _, sw in items if kind in sw.kinds)
        for i, (label, sw) in enumerate(items):
            if kind in sw.kinds:
                _band(ax, sw, kind, value, label, series(i))
        if log:
            ax.set_yscale("symlog" if value == "loss" else "log")
        ax.set_xlabel(radius_label(kind, radii, items[0][1].attrs.get("normalize", "none")), fontsize="small")
        ax.set_ylabel("loss increase L(w+δ) − L(w)" if value == "loss" else "accuracy (%)")
        ax.set_title(kind)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    if legend:
        _legend_outside(axes[0, -1])
    return fig


def compare_spectra(items: list[tuple[str, dict]]) -> Figure:
    """Top Hessian eigenvalues by rank of several runs (a group's mean with +-1 std over seeds) and, where
    computed, their spectral densities (log scale).

    Args:
        items: ``(label, spectrum)`` pairs: ``eigenvalues`` (and ``*_std``), optionally ``grid`` and ``density``.

    Returns:
        A matplotlib ``Figure``.
    """
    dens = [(label, a) for label, a in items if a.get("density") is not None]
    fig, axes = _subplots(
        1, 1 + bool(dens), figsize=(5.2 * (1 + bool(dens)) + 1.4, 3.5), layout="constrained", squeeze=False
    )
    ax = axes[0, 0]
    for i, (label, a) in enumerate(items):
        if a.get("eigenvalues") is not None:
            ranks = np.arange(1, len(a["eigenvalues"]) + 1)
            style = series(i)
            ax.errorbar(ranks, a["eigenvalues"], yerr=a.get("eigenvalues_std"), capsize=3, label=label, **style)
    ax.set(xlabel="rank", ylabel="eigenvalue", title="top Hessian eigenvalues")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    if dens:
        ax2 = axes[0, 1]
        for i, (label, a) in enumerate(items):
            if a.get("density") is not None:
                ax2.semilogy(
                    a["density_grid"],
                    np.maximum(a["density"], 1e-12),
                    label=label,
                    color=series(i)["color"],
                    linestyle=series(i)["linestyle"],
                )
        ax2.set_ylim(bottom=max(1e-8, max(float(np.max(a["density"])) for _, a in dens) * 1e-8))
        ax2.set(xlabel="eigenvalue", ylabel="density (log scale)", title="spectral density (SLQ)")
    _legend_outside(axes[0, -1])
    return fig


def compare_surfaces(
    items: list[tuple[str, Surface]], *, value: str = "train_loss", log: bool = False, levels: int = 30
) -> Figure:
    """2-D surfaces side by side as filled contours on one colour scale (same levels, one colour bar).

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        value: the value drawn, e.g. ``train_loss``, ``test_acc``.
        log: colours (or the y-axis) follow log10 of the loss (positive losses).
        levels: the number of contour levels.

    Returns:
        A matplotlib ``Figure``.
    """
    zs = [np.ma.masked_invalid(s.values[value]) for _, s in items]
    levels, norm = _levels_and_norm(min(float(z.min()) for z in zs), max(float(z.max()) for z in zs), levels, log)
    fig, axes = _subplots(
        1,
        len(items),
        figsize=(3.4 * len(items) + 1.2, 3.6),
        layout="constrained",
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for ax, (label, s), z in zip(axes[0], items, zs):
        cs = ax.contourf(s.xcoordinates, s.ycoordinates, z, levels=levels, cmap=SEQUENTIAL, norm=norm, extend="both")
        _trajectory(ax, s)
        ax.set(title=label, xlabel=axis_label(s, "x"))
        ax.set_aspect("equal")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    axes[0, 0].set_ylabel(axis_label(items[0][1], "y"))
    _colorbar(fig, cs, axes[0].tolist(), human(value), norm)
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
        ax.plot(
            s.extras["proj_xcoord"],
            s.extras["proj_ycoord"],
            color=PALETTE[1],
            marker=".",
            markersize=4,
            linewidth=1,
            label=path_label(s),
        )
        ax.legend(loc="best", fontsize="small", framealpha=0.8)  # inside: above the axes it would meet the title


def _band(ax, sw: Sweep, kind: str, value: str, label: str, style: dict) -> None:
    """The mean curve (its increase over radius 0 for the loss) and its +-1 std band, clipped to what it can be."""
    mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
    zero = np.flatnonzero(sw.radii == 0)
    base = float(mean[zero[0]]) if value == "loss" and zero.size else 0.0
    lo, hi = band_limits(mean, std, base, value)
    (line,) = ax.plot(sw.radii, mean - base, label=label, markersize=4, **style)
    ax.fill_between(sw.radii, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)


def robustness_by_severity(items: list[tuple[str, Robustness | dict]]) -> Figure:
    """Error and ECE per severity pooled over corruptions (0 = clean), one line per run or group (DAMP paper
    Fig. 3/4).

    Args:
        items: ``(label, result)`` pairs: a robustness file read back, or its
            :func:`~landscape.io.robustness.severity_curves`
            (a group's mean with ``*_std``).

    Returns:
        A matplotlib ``Figure``.
    """
    fig, axes = _subplots(1, 2, figsize=(10.5, 3.6), layout="constrained")
    for i, (label, r) in enumerate(items):
        c = r if isinstance(r, dict) else severity_curves(r)
        for ax, metric in zip(axes, ("error", "ece")):
            ax.errorbar(
                c["severity"], c[metric], yerr=c.get(f"{metric}_std"), capsize=3, label=label, markersize=4, **series(i)
            )
    for ax, name in zip(axes, ("error (%)", "ECE")):
        ax.set(xlabel="severity (0 = clean)", ylabel=name, title=f"{name} pooled over corruptions")
        ax.set_xticks(range(6))
    _legend_outside(axes[1])
    return fig


def corruption_table(
    labels: list[str], corruptions: list[str], values: np.ndarray, *, title: str, center: float | None = None
) -> Figure:
    """A (rows x corruptions) heat map with the numbers written in (DAMP paper Fig. 5): errors per severity, or
    ratios such as CE per run.

    Args:
        labels: the rows (runs, or severities).
        corruptions: the columns.
        values: ``(rows, corruptions)`` numbers.
        title: the figure's title.
        center: ``None``: a sequential scale; ``1``: ratios on a log scale symmetric about 1 (0.63 as blue as 1.59 red).

    Returns:
        A matplotlib ``Figure``.
    """
    names = max((len(c) for c in corruptions), default=0)  # the column names stand upright below the table
    fig, ax = _subplots(
        figsize=(0.55 * len(corruptions) + 2.8, 0.45 * len(labels) + 1.3 + 0.075 * names), layout="constrained"
    )
    values = np.asarray(values, dtype=float)
    if center is not None:
        logs = np.log(np.where(values > 0, values, np.nan) / center)
        reach = float(np.nanmax(np.abs(logs))) if np.isfinite(logs).any() else 1.0
        norm = Normalize(-max(reach, 1e-3), max(reach, 1e-3))
        mesh = ax.imshow(logs, cmap=DIVERGING, norm=norm, aspect="auto")
    else:
        norm = Normalize(float(np.nanmin(values)), float(np.nanmax(values)))
        mesh = ax.imshow(values, cmap=SEQUENTIAL, norm=norm, aspect="auto")
    cmap = matplotlib.colormaps.get_cmap(DIVERGING if center is not None else SEQUENTIAL)
    shown = logs if center is not None else values
    for (i, j), v in np.ndenumerate(values):
        cell = cmap(norm(shown[i, j])) if np.isfinite(shown[i, j]) else (1, 1, 1)
        ax.text(
            j,
            i,
            f"{v:.2f}" if center is not None else f"{v:.1f}",
            ha="center",
            va="center",
            fontsize=6.5,
            color=text_colour(cell),
        )
    ax.set_xticks(range(len(corruptions)), corruptions, rotation=90, fontsize=8)  # long names side by side
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    bar = fig.colorbar(mesh, ax=ax, shrink=0.8)
    if center is not None:  # ticks at ratios, placed on their log
        reach = float(norm.vmax or 0.0)
        ratios = [r for r in (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 4.0) if abs(np.log(r)) <= reach + 1e-9]
        room = max(3, int(fig.get_figheight() * 1.5))  # labels the bar's height holds
        kept: list[float] = []
        for r in sorted(ratios, key=lambda r: abs(np.log(r))):  # from 1 outwards, a tick where its label fits
            if all(abs(np.log(r) - np.log(k)) >= 2 * reach / (room - 1) for k in kept):
                kept.append(r)
        ratios = sorted(kept)
        bar.set_ticks([np.log(r) for r in ratios])
        bar.set_ticklabels([f"{r * center:g}" for r in ratios])
        bar.set_label(f"ratio (log, centre {center:g})")
    ax.set_title(title)
    return fig


__all__ = [
    "SURFACE_2D_KINDS",
    "batch_eigenvalues",
    "correlation_scatter",
    "surface_1d",
    "surface_2d",
    "hessian_spectrum",
    "sweep_curves",
    "reliability_diagram",
    "training_curves",
    "sharpness_curves",
    "compare_slices",
    "compare_surfaces",
    "compare_sweeps",
    "compare_spectra",
    "robustness_by_severity",
    "corruption_table",
    "save",
    "to_bytes",
]
