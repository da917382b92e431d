"""Interactive plotly versions of the figures in :mod:`landscape.plots.mpl` (data in, ``go.Figure`` out).

The same conventions (:mod:`landscape.plots.style`): colour-blind-safe series, human labels, equal aspect for
2-D surfaces, and log-scale surfaces drawn on log10 values but labelled and hovered in real loss units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.trainers.metrics import ece_from_bins

from ..io import Surface, Sweep
from ..io.robustness import Robustness, severity_curves
from .style import (
    PALETTE,
    PLOTLY_SPLIT_DASHES,
    THRESHOLD_LABELS,
    TRAINING_PANELS,
    axis_label,
    band_limits,
    human,
    log_ticks,
    path_label,
    plotly_series,
    radius_label,
    run_title,
    surface_title,
    wants_log,
)

SURFACE_2D_KINDS: tuple[str, ...] = ("contour", "heatmap", "surface3d")
TEMPLATE = "plotly_white"


def _clean(a: np.ndarray) -> list:
    """JSON-safe values: NaN/inf (not computed / diverged) become gaps (vectorized: surfaces send 151^2 values)."""
    a = np.asarray(a, dtype=float)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def _dash(split: str) -> str:
    return PLOTLY_SPLIT_DASHES.get(split, "dot")


def _log_colorbar(lo: float, hi: float, title: str) -> dict:
    """A colour bar for log10 values whose ticks read in real units."""
    ticks = log_ticks(10**lo, 10**hi)
    return {"title": title, "tickvals": np.log10(ticks).tolist(), "ticktext": [f"{t:.3g}" for t in ticks]}


def surface_1d(s: Surface, *, log: bool | None = None) -> go.Figure:
    """Loss (left axis) and accuracy (right axis) of every split along a 1-D surface (Li et al.), train solid,
    test dashed.

    Args:
        s: the surface.
        log: losses on a log axis (``None``: when they span more than two decades, so the basin stays visible).

    Returns:
        A plotly ``Figure``.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for split in s.splits:
        for value, color, right in (("loss", PALETTE[0], False), ("acc", PALETTE[1], True)):
            if s.has(split, value):
                key = f"{split}_{value}"
                line = {"color": color, "dash": _dash(split)}
                trace = go.Scatter(x=s.xcoordinates, y=_clean(s.values[key]), name=human(key), line=line)
                fig.add_trace(trace, secondary_y=right)
                if key in s.spread:  # over seeds of directions: +-1 std
                    band = np.concatenate([s.values[key] + s.spread[key], (s.values[key] - s.spread[key])[::-1]])
                    fig.add_trace(
                        go.Scatter(
                            x=np.concatenate([s.xcoordinates, s.xcoordinates[::-1]]),
                            y=_clean(band),
                            fill="toself",
                            fillcolor=color,
                            opacity=0.18,
                            line={"width": 0},
                            hoverinfo="skip",
                            showlegend=False,
                        ),
                        secondary_y=right,
                    )
    logged = log or (log is None and wants_log(*(s.values[f"{sp}_loss"] for sp in s.splits)))
    fig.update_xaxes(title_text=axis_label(s, "x"))
    fig.update_yaxes(title_text="loss", type="log" if logged else "linear", secondary_y=False)
    # fixed ticks: plotly.js syncs an overlaying axis to the loss axis's ticks (99.7, 91.6, ... on a log loss axis)
    ticks = {"tickmode": "array", "tickvals": list(range(0, 101, 20)), "showgrid": False}
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], secondary_y=True, **ticks)
    fig.update_layout(title=surface_title(s, "<br>"), template=TEMPLATE)
    return fig


def surface_2d(
    s: Surface, kind: str = "contour", *, value: str = "train_loss", log: bool = False, levels: int = 30
) -> go.Figure:
    """A 2-D surface on equal axes, its trajectory overlaid if stored; on a log scale the colour bar, axes and
    hovers read in real loss units.

    Args:
        s: the surface.
        kind: one of ``SURFACE_2D_KINDS`` (contour, heat map or 3-D surface).
        value: the value drawn, e.g. ``train_loss``, ``test_acc``.
        log: colours (or the y-axis) follow log10 of the loss (positive losses).
        levels: the number of contour levels.

    Returns:
        A plotly ``Figure``.

    Raises:
        ValueError: an unknown ``kind``, a 1-D surface, or a value the surface lacks.
    """
    if kind not in SURFACE_2D_KINDS:
        raise ValueError(f"unknown 2-D plot {kind!r}; choose from {', '.join(SURFACE_2D_KINDS)}")
    z = s.values[value]
    logged = bool(log) and bool(np.nanmin(z) > 0) if np.isfinite(z).any() else False
    shown = np.log10(np.where(z > 0, z, np.nan)) if logged else z
    label = human(value)
    hover = f"x %{{x:.3g}}<br>y %{{y:.3g}}<br>{label} %{{customdata:.4g}}<extra></extra>"
    bar = _log_colorbar(float(np.nanmin(shown)), float(np.nanmax(shown)), label) if logged else {"title": label}
    if kind == "surface3d":
        fig = go.Figure(
            go.Surface(
                x=s.xcoordinates,
                y=s.ycoordinates,
                z=_clean(shown),
                colorscale="Viridis",
                colorbar=bar,
                customdata=_clean(z),
                hovertemplate=hover,
            )
        )
        z_ticks = log_ticks(10 ** float(np.nanmin(shown)), 10 ** float(np.nanmax(shown)), most=6) if logged else None
        zaxis: dict[str, Any] = {"title": label}
        if z_ticks is not None:  # a short axis: a few round values, not the colour bar's 1-2-5 crowd
            zaxis.update(tickvals=np.log10(z_ticks).tolist(), ticktext=[f"{t:.3g}" for t in z_ticks])
        fig.update_layout(
            scene={
                "xaxis_title": axis_label(s, "x"),
                "yaxis_title": axis_label(s, "y"),
                "zaxis": zaxis,
                "aspectmode": "manual",
                "aspectratio": {"x": 1, "y": 1, "z": 0.7},
            }
        )
    else:
        trace = go.Contour if kind == "contour" else go.Heatmap
        # no contour labels: they would print log10 values, and crowd where the lines do (the browser check found
        # "7" over "9"); the colour bar and the hover carry the values
        extra = {"ncontours": levels} if kind == "contour" else {}
        fig = go.Figure(
            trace(
                x=s.xcoordinates,
                y=s.ycoordinates,
                z=_clean(shown),
                colorscale="Viridis",
                colorbar=bar,
                customdata=_clean(z),
                hovertemplate=hover,
                **extra,
            )
        )
        if "proj_xcoord" in s.extras:
            fig.add_trace(
                go.Scatter(
                    x=s.extras["proj_xcoord"],
                    y=s.extras["proj_ycoord"],
                    mode="lines+markers",
                    name=path_label(s),
                    line={"color": PALETTE[1]},
                )
            )
        # equal axes by shrinking the plot, not by widening the x range past the grid (a -1..1 grid drawn on -3..3)
        # ticks outside: the two axes' first labels (-1 and -1) meet at the corner otherwise
        fig.update_xaxes(title_text=axis_label(s, "x"), constrain="domain", ticks="outside", ticklen=4)
        fig.update_yaxes(
            title_text=axis_label(s, "y"), scaleanchor="x", scaleratio=1, constrain="domain", ticks="outside", ticklen=4
        )
    fig.update_layout(title=f"{surface_title(s, '<br>')}: {label}", template=TEMPLATE)
    return fig


def cross_sections(s: Surface, x: float, y: float, *, value: str = "train_loss", log: bool = False) -> go.Figure:
    """The two 1-D slices of a 2-D surface through the grid point nearest ``(x, y)``, that point marked.

    Args:
        s: the surface.
        x: the first coordinate of the point.
        y: the second.
        value: the value drawn, e.g. ``train_loss``, ``test_acc``.
        log: colours (or the y-axis) follow log10 of the loss (positive losses).

    Returns:
        A plotly ``Figure``.
    """
    along_x, along_y = s.slice("x", y), s.slice("y", x)
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"along x at {along_x.attrs['slice']}", f"along y at {along_y.attrs['slice']}"]
    )
    metric = value.rpartition("_")[2]
    for col, (cut, at) in enumerate(((along_x, x), (along_y, y)), 1):
        for i, split in enumerate(cut.splits):
            if cut.has(split, metric):
                name = f"{split}_{metric}"
                fig.add_trace(
                    go.Scatter(
                        x=cut.xcoordinates,
                        y=_clean(cut.values[name]),
                        name=human(name),
                        legendgroup=name,
                        showlegend=col == 1,
                        line={"dash": _dash(split), "color": PALETTE[i % len(PALETTE)]},
                    ),
                    row=1,
                    col=col,
                )
        fig.add_vline(
            x=float(cut.xcoordinates[np.argmin(np.abs(cut.xcoordinates - at))]),
            line={"dash": "dot", "color": "gray"},
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=axis_label(cut, "x"), row=1, col=col)
    fig.update_yaxes(title_text=human(metric), type="log" if log else "linear")
    fig.update_layout(template=TEMPLATE, title=f"slices through the clicked point: {human(value)}")
    return fig


def hessian_spectrum(
    eigenvalues: np.ndarray | None,
    grid: np.ndarray | None = None,
    density: np.ndarray | None = None,
    *,
    title: str = "",
) -> go.Figure:
    """The top eigenvalues by rank and, where given, the spectral density (log scale).

    Args:
        eigenvalues: the top eigenvalues (``None``: none computed).
        grid: the density's grid (``None``: no density).
        density: the spectral density on ``grid``.
        title: the figure's title.

    Returns:
        A plotly ``Figure``.

    Raises:
        ValueError: neither eigenvalues nor a density to draw.
    """
    cols = (eigenvalues is not None) + (density is not None)
    if not cols:
        raise ValueError("nothing to plot: no eigenvalues and no density")
    names = (["top Hessian eigenvalues"] if eigenvalues is not None else []) + (
        ["spectral density (SLQ)"] if density is not None else []
    )
    fig = make_subplots(rows=1, cols=cols, subplot_titles=names)
    col = 1
    if eigenvalues is not None:
        fig.add_trace(
            go.Bar(x=np.arange(1, len(eigenvalues) + 1), y=eigenvalues, name="eigenvalues", marker_color=PALETTE[0]),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="rank", dtick=1, row=1, col=col)
        fig.update_yaxes(title_text="eigenvalue", row=1, col=col)
        col += 1
    if density is not None:
        fig.add_trace(
            go.Scatter(x=grid, y=np.maximum(density, 1e-12), name="density", line={"color": PALETTE[0]}), row=1, col=col
        )
        fig.update_yaxes(type="log", title_text="density (log scale)", row=1, col=col)
        fig.update_xaxes(title_text="eigenvalue", row=1, col=col)
    fig.update_layout(title=title, template=TEMPLATE, showlegend=False)
    return fig


def batch_eigenvalues(values: np.ndarray, batch_size: int, full: float | None = None, *, title: str = "") -> go.Figure:
    """The per-batch top eigenvalues as an interactive histogram (as :func:`landscape.plots.mpl.batch_eigenvalues`).

    Args:
        values: one top eigenvalue per batch.
        batch_size: how many examples each batch held.
        full: the top eigenvalue of the whole split, drawn as a dashed line (``None``: none).
        title: the title (default "per-batch sharpness").

    Returns:
        A plotly ``Figure``.
    """
    fig = go.Figure(go.Histogram(x=values, name=f"{len(values)} batches", marker_color=PALETTE[0], opacity=0.8))
    if full is not None:
        fig.add_vline(x=full, line={"color": PALETTE[1], "dash": "dash"}, annotation_text="whole split")
    fig.update_layout(
        title=title or "per-batch sharpness",
        xaxis_title=f"top eigenvalue of a batch of {batch_size}",
        yaxis_title="batches",
        template=TEMPLATE,
    )
    return fig


def sweep_curves(sw: Sweep, *, value: str = "loss", log: bool = False) -> go.Figure:
    """One panel per perturbation kind, each with its radius unit and range: the loss increase over the unperturbed
    loss (or the accuracy), the mean over trials with its +-1 std band.

    Args:
        sw: the sweep.
        value: ``"loss"`` (the increase) or ``"acc"``.
        log: the y-axis on a log scale.

    Returns:
        A plotly ``Figure``.
    """
    fig = compare_sweeps([(run_title(sw.attrs) or "sweep", sw)], value=value, log=log)
    fig.update_layout(showlegend=False, title=f"{run_title(sw.attrs)}: loss against perturbation radius".strip(": "))
    return fig


def reliability_diagram(curves: list[tuple[str, dict]], *, title: str = "") -> go.Figure:
    """Reliability diagrams (Guo et al.), one column per model: accuracy per confidence bin with the gap to the
    diagonal, and the share of predictions in each bin.

    Args:
        curves: ``(label, bins)`` pairs, ``bins`` from :func:`landscape.trainers.metrics.reliability`.
        title: the figure's title.

    Returns:
        A plotly ``Figure``.
    """
    n = len(curves)
    fig = make_subplots(
        rows=2,
        cols=n,
        row_heights=[0.25, 0.75],
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=0.05,
        horizontal_spacing=0.03,
        subplot_titles=[f"{label} (ECE {ece_from_bins(rel):.4f})" for label, rel in curves],
    )
    for col, (label, rel) in enumerate(curves, 1):
        full = rel["count"] > 0
        centres = ((rel["edges"][:-1] + rel["edges"][1:]) / 2)[full]
        width = np.diff(rel["edges"])[full]
        acc, conf = rel["accuracy"][full], rel["confidence"][full]
        first = col == 1
        fig.add_trace(
            go.Bar(
                x=centres,
                y=rel["count"][full] / rel["count"].sum(),
                width=width,
                name="share",
                marker_color="gray",
                showlegend=False,
                customdata=rel["count"][full],
                hovertemplate="%{customdata:.0f} predictions",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=centres,
                y=acc,
                width=width,
                name="accuracy",
                legendgroup="accuracy",
                showlegend=first,
                marker_color=PALETTE[0],
                customdata=conf,
                hovertemplate="accuracy %{y:.3f}<br>confidence %{customdata:.3f}",
            ),
            row=2,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=centres,
                y=conf - acc,
                base=acc,
                width=width,
                name="gap to confidence",
                legendgroup="gap",
                showlegend=first,
                marker={"color": "rgba(213,94,0,0.35)", "pattern": {"shape": "/"}},
            ),
            row=2,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="perfect calibration",
                legendgroup="diag",
                showlegend=first,
                line={"color": "gray", "dash": "dot"},
            ),
            row=2,
            col=col,
        )
        fig.update_xaxes(range=[0, 1], row=1, col=col)
        fig.update_xaxes(range=[0, 1], title_text="confidence", row=2, col=col)
    shares = np.concatenate([rel["count"][rel["count"] > 0] / rel["count"].sum() for _, rel in curves])
    fig.update_yaxes(type="log", range=[np.log10(shares.min()) - 0.3, 0.1], row=1)
    fig.update_yaxes(range=[0, 1], row=2)
    fig.update_yaxes(title_text="share", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=2, col=1)
    fig.update_layout(title=title or "reliability diagram", template=TEMPLATE, barmode="overlay", bargap=0, height=480)
    return fig


def compare_slices(items: list[tuple[str, Surface]], *, log: bool | None = None, title: str | None = None) -> go.Figure:
    """1-D loss and accuracy of several runs on shared axes: a colour and marker per run, train solid, test dashed.

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        log: losses on a log axis (``None``: when they span more than two decades, so the basin stays visible).
        title: what the lines are (default: 1-D slices).

    Returns:
        A plotly ``Figure``.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy (%)"], shared_xaxes=True)
    for i, (label, s) in enumerate(items):
        style = plotly_series(i)
        for split in s.splits:
            for col, metric in ((1, "loss"), (2, "acc")):
                if s.has(split, metric):
                    name = f"{split}_{metric}"
                    trace = _split_trace(s.xcoordinates, s.values[name], s.spread.get(name), label, split, style)
                    fig.add_trace(trace.update(showlegend=col == 1), row=1, col=col)
    logged = log or (log is None and wants_log(*(s.values[f"{sp}_loss"] for _, s in items for sp in s.splits)))
    fig.update_xaxes(title_text=axis_label(items[0][1], "x"))
    fig.update_yaxes(type="log" if logged else "linear", title_text="loss", row=1, col=1)
    fig.update_yaxes(range=[0, 100], title_text="accuracy (%)", row=1, col=2)
    fig.update_layout(template=TEMPLATE, title=title or "1-D slices")
    return fig


def _split_trace(x, y, spread, label: str, split: str, style: dict) -> go.Scatter:
    """One run's (or group's) curve of one split, train solid and test dashed, with +-1 std error bars where
    given; one legend entry per (run, split)."""
    err = {"error_y": {"type": "data", "array": _clean(spread), "thickness": 1}} if spread is not None else {}
    return go.Scatter(
        x=x,
        y=_clean(y),
        name=f"{label}, {split}",
        legendgroup=f"{label} {split}",
        mode="lines+markers",
        line={**style["line"], "dash": _dash(split)},
        marker=style["marker"],
        **err,
    )


def training_curves(items: list[tuple[str, dict]]) -> go.Figure:
    """Loss, error and ECE per epoch: a colour and marker per run or group, train solid, test dashed, +-1 std bands.

    Args:
        items: ``(label, curves)`` pairs: :func:`landscape.groups.history_curves`, or their mean over seeds with
        ``*_std``.

    Returns:
        A plotly ``Figure``.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for t, _ in TRAINING_PANELS])
    for i, (label, c) in enumerate(items):
        style = plotly_series(i)
        for col, (_, keys) in enumerate(TRAINING_PANELS, 1):
            for key in (k for k in keys if k in c and np.isfinite(c[k]).any()):
                split = key.split("_")[0]
                trace = _split_trace(c["epoch"], c[key], c.get(f"{key}_std"), label, split, style)
                fig.add_trace(trace.update(showlegend=col == 1), row=1, col=col)
    for col, (title, keys) in enumerate(TRAINING_PANELS, 1):
        logged = keys[0] != "test_ece" and wants_log(*(c[k] for _, c in items for k in keys if k in c))
        fig.update_yaxes(title_text=title, type="log" if logged else "linear", row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(template=TEMPLATE, title="training curves")
    return fig


def sharpness_curves(items: list[tuple[str, dict]]) -> go.Figure:
    """The edge-of-stability figure (Cohen et al. 2021, figure 1): the loss on the tracked data and the top Hessian
    eigenvalue (and Adam's preconditioned one, dashed) against the step, each run's stability threshold dotted,
    +-1 std error bars over seeds.

    Args:
        items: ``(label, curves)`` pairs: :func:`landscape.groups.curvature_curves` of a tracker's history, or their
            mean over seeds with ``*_std``.

    Returns:
        A plotly ``Figure``.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss on the tracked data", "sharpness"])
    for i, (label, c) in enumerate(items):
        style = plotly_series(i)
        fig.add_trace(_split_trace(c["step"], c["loss"], c.get("loss_std"), label, "train", style), row=1, col=1)
        for key, what, dash in (("sharpness", "top eigenvalue", "train"), ("preconditioned", "preconditioned", "test")):
            if np.isfinite(c.get(key, np.nan)).any():
                trace = _split_trace(c["step"], c[key], c.get(f"{key}_std"), f"{label}: {what}", dash, style)
                fig.add_trace(trace, row=1, col=2)
        for key, text in THRESHOLD_LABELS.items():
            finite = np.asarray(c.get(key, [np.nan]), float)
            finite = finite[np.isfinite(finite)]
            if len(finite):
                fig.add_hline(y=float(finite[-1]), line={"color": style["line"]["color"], "dash": "dot", "width": 1},
                              annotation_text=f"{label}: {text}", row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="step")
    logged = wants_log(*(c["loss"] for _, c in items))
    fig.update_yaxes(type="log" if logged else "linear", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="sharpness", row=1, col=2)
    fig.update_layout(template=TEMPLATE, title="curvature during training")
    return fig


def compare_sweeps(items: list[tuple[str, Sweep]], *, value: str = "loss", log: bool = False) -> go.Figure:
    """One panel per perturbation kind; one line per run (or group mean): the loss increase over the unperturbed
    loss with a +-1 std band (over trials, or over seeds for a group).

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        value: ``"loss"`` (the increase) or ``"acc"``.
        log: the y-axis on a log scale.

    Returns:
        A plotly ``Figure``.
    """
    kinds = list(dict.fromkeys(k for _, sw in items for k in sw.kinds))
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds)
    for col, kind in enumerate(kinds, 1):
        radii = next(sw.radii for _, sw in items if kind in sw.kinds)
        for i, (label, sw) in enumerate(items):
            if kind in sw.kinds:
                fig.add_trace(_band(sw, kind, value, label, plotly_series(i), col == 1), row=1, col=col)
        fig.update_xaxes(
            title_text=radius_label(kind, radii, items[0][1].attrs.get("normalize", "none")),
            row=1,
            col=col,
            title_font={"size": 11},
        )
    fig.update_yaxes(title_text="loss increase L(w+δ) − L(w)" if value == "loss" else "accuracy (%)", row=1, col=1)
    if log:
        fig.update_yaxes(type="log")
    fig.update_layout(template=TEMPLATE, title="loss against perturbation radius")
    return fig


def compare_spectra(items: list[tuple[str, dict]]) -> go.Figure:
    """Top Hessian eigenvalues by rank of several runs (a group's mean with +-1 std over seeds) and, where
    computed, their spectral densities (log scale).

    Args:
        items: ``(label, spectrum)`` pairs: ``eigenvalues`` (and ``*_std``), optionally ``grid`` and ``density``.

    Returns:
        A plotly ``Figure``.
    """
    dens = [(label, a) for label, a in items if a.get("density") is not None]
    fig = make_subplots(
        rows=1,
        cols=1 + bool(dens),
        subplot_titles=["top Hessian eigenvalues"] + (["spectral density (SLQ)"] if dens else []),
    )
    for i, (label, a) in enumerate(items):
        style = plotly_series(i)
        if a.get("eigenvalues") is not None:
            err = (
                {"error_y": {"type": "data", "array": _clean(a["eigenvalues_std"])}}
                if a.get("eigenvalues_std") is not None
                else {}
            )
            fig.add_trace(
                go.Scatter(
                    x=np.arange(1, len(a["eigenvalues"]) + 1),
                    y=a["eigenvalues"],
                    name=label,
                    legendgroup=label,
                    mode="lines+markers",
                    **style,
                    **err,
                ),
                row=1,
                col=1,
            )
        if a.get("density") is not None:
            fig.add_trace(
                go.Scatter(
                    x=a["density_grid"],
                    y=np.maximum(a["density"], 1e-12),
                    name=label,
                    legendgroup=label,
                    showlegend=False,
                    line=style["line"],
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="rank", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue", row=1, col=1)
    if dens:
        fig.update_xaxes(title_text="eigenvalue", row=1, col=2)
        fig.update_yaxes(title_text="density (log scale)", type="log", row=1, col=2)
    fig.update_layout(template=TEMPLATE, title="Hessian spectra")
    return fig


def compare_surfaces(items: list[tuple[str, Surface]], *, value: str = "train_loss", log: bool = False) -> go.Figure:
    """2-D surfaces side by side as filled contours on one colour scale (same levels, one colour bar).

    Args:
        items: ``(label, result)`` pairs, one per run or group (a group's mean carries its spread over seeds).
        value: the value drawn, e.g. ``train_loss``, ``test_acc``.
        log: colours (or the y-axis) follow log10 of the loss (positive losses).

    Returns:
        A plotly ``Figure``.
    """
    log = log or all(np.nanmin(s.values[value]) > 0 for _, s in items)
    zs = [
        np.log10(np.where(s.values[value] > 0, s.values[value], np.nan)) if log else s.values[value] for _, s in items
    ]
    lo, hi = float(np.nanmin([np.nanmin(z) for z in zs])), float(np.nanmax([np.nanmax(z) for z in zs]))
    levels = {"showlabels": not log, "start": lo, "end": hi, "size": (hi - lo) / 20 or 1}  # the same in every panel
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=[label for label, _ in items], shared_yaxes=True)
    label = human(value)
    for col, ((name, s), z) in enumerate(zip(items, zs), 1):
        fig.add_trace(
            go.Contour(
                x=s.xcoordinates,
                y=s.ycoordinates,
                z=_clean(z),
                coloraxis="coloraxis",
                name=name,
                contours=levels,
                autocontour=False,
                customdata=_clean(s.values[value]),
                hovertemplate=f"x %{{x:.3g}}<br>y %{{y:.3g}}<br>{label} %{{customdata:.4g}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        # every x scaled to the one shared y: equal units in each panel, and equal widths for equal ranges
        fig.update_xaxes(
            title_text=axis_label(s, "x"),
            scaleanchor="y",
            scaleratio=1,
            constrain="domain",
            ticks="outside",
            ticklen=4,
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=axis_label(items[0][1], "y"), ticks="outside", ticklen=4, row=1, col=1)
    bar = _log_colorbar(lo, hi, label) if log else {"title": label}
    fig.update_layout(
        template=TEMPLATE, title=label, coloraxis={"colorscale": "Viridis", "cmin": lo, "cmax": hi, "colorbar": bar}
    )
    return fig


def _band(sw: Sweep, kind: str, value: str, name: str, style: dict, legend: bool) -> go.Scatter:
    mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
    zero = np.flatnonzero(sw.radii == 0)
    base = float(mean[zero[0]]) if value == "loss" and zero.size else 0.0
    lo, hi = band_limits(mean, std, base, value)
    return go.Scatter(
        x=sw.radii,
        y=_clean(mean - base),
        name=name,
        legendgroup=name,
        showlegend=legend,
        mode="lines+markers",
        **style,
        error_y={
            "type": "data",
            "symmetric": False,
            "array": _clean(hi - (mean - base)),
            "arrayminus": _clean(mean - base - lo),
            "visible": True,
        },
    )


def robustness_by_severity(items: list[tuple[str, Robustness | dict]]) -> go.Figure:
    """Error and ECE per severity pooled over corruptions (0 = clean), one line per run or group (DAMP paper
    Fig. 3/4).

    Args:
        items: ``(label, result)`` pairs: a robustness file read back, or its
            :func:`~landscape.io.robustness.severity_curves`
            (a group's mean with ``*_std``).

    Returns:
        A plotly ``Figure``.
    """
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["error (%) pooled over corruptions", "ECE pooled over corruptions"]
    )
    for i, (label, r) in enumerate(items):
        c = r if isinstance(r, dict) else severity_curves(r)
        for col, metric in enumerate(("error", "ece"), 1):
            err = {"error_y": {"type": "data", "array": _clean(c[f"{metric}_std"])}} if f"{metric}_std" in c else {}
            fig.add_trace(
                go.Scatter(
                    x=c["severity"],
                    y=c[metric],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    mode="lines+markers",
                    **plotly_series(i),
                    **err,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="severity (0 = clean)", dtick=1)
    fig.update_layout(template=TEMPLATE, title="corruption robustness")
    return fig


def corruption_table(
    labels: list[str], corruptions: list[str], values: np.ndarray, *, title: str, center: float | None = None
) -> go.Figure:
    """A (rows x corruptions) heat map with the numbers written in (DAMP paper Fig. 5): errors per severity, or
    ratios such as CE per run.

    Args:
        labels: the rows (runs, or severities).
        corruptions: the columns.
        values: ``(rows, corruptions)`` numbers.
        title: the figure's title.
        center: ``None``: a sequential scale; ``1``: ratios on a log scale symmetric about 1 (0.63 as blue as 1.59 red).

    Returns:
        A plotly ``Figure``.
    """
    values = np.asarray(values, dtype=float)
    if center is not None:
        logs = np.log(np.where(values > 0, values, np.nan) / center)
        reach = max(float(np.nanmax(np.abs(logs))) if np.isfinite(logs).any() else 1.0, 1e-3)
        ratios = [r for r in (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 4.0) if abs(np.log(r)) <= reach + 1e-9]
        extra = {
            "colorscale": "RdBu_r",
            "zmin": -reach,
            "zmax": reach,
            "zmid": 0,
            "z": _clean(logs),
            "colorbar": {
                "tickvals": [float(np.log(r)) for r in ratios],
                "ticktext": [f"{r * center:g}" for r in ratios],
                "title": "ratio",
            },
        }
    else:
        extra = {"colorscale": "Viridis", "z": _clean(values)}
    fig = go.Figure(
        go.Heatmap(
            x=corruptions,
            y=labels,
            text=[[f"{v:.2f}" for v in row] for row in values],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
            **extra,
        )
    )
    fig.update_layout(template=TEMPLATE, title=title, yaxis={"autorange": "reversed"}, xaxis={"tickangle": -45})
    return fig


__all__ = [
    "SURFACE_2D_KINDS",
    "batch_eigenvalues",
    "surface_1d",
    "surface_2d",
    "cross_sections",
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
]
