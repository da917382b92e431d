"""Interactive plotly versions of the figures in :mod:`landscape.plot_mpl` (data in, ``go.Figure`` out)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS as DEFAULT_COLORS
from plotly.subplots import make_subplots

from trainers.metrics import ece_from_bins

from .plot_mpl import _axis_label, _similar_ranges, _title
from .robustness import Robustness
from .store import Surface, Sweep

SURFACE_2D_KINDS = ("contour", "heatmap", "surface3d")
DASH = {"train": "solid", "test": "dash"}  # any other split: dotted


def _clean(a: np.ndarray) -> list:
    """JSON-safe values: NaN/inf (not computed / diverged) become gaps."""
    return np.where(np.isfinite(a), a, None).tolist()


def surface_1d(s: Surface, *, log: bool = False) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for split in s.splits:
        dash = DASH.get(split, "dot")
        fig.add_trace(go.Scatter(x=s.xcoordinates, y=_clean(s.values[f"{split}_loss"]), name=f"{split} loss",
                                 line={"color": "blue", "dash": dash}), secondary_y=False)
        if s.has(split, "acc"):
            fig.add_trace(go.Scatter(x=s.xcoordinates, y=_clean(s.values[f"{split}_acc"]), name=f"{split} accuracy",
                                     line={"color": "red", "dash": dash}), secondary_y=True)
    fig.update_xaxes(title_text=_axis_label(s, "x"))
    fig.update_yaxes(title_text="loss", type="log" if log else "linear", secondary_y=False)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], secondary_y=True)
    fig.update_layout(title=_title(s), template="plotly_white")
    return fig


def surface_2d(s: Surface, kind: str = "contour", *, value: str = "train_loss", log: bool = False,
               levels: int = 30) -> go.Figure:
    if kind not in SURFACE_2D_KINDS:
        raise ValueError(f"unknown 2-D plot {kind!r}; choose from {', '.join(SURFACE_2D_KINDS)}")
    z = s.values[value]
    shown = np.log10(np.where(z > 0, z, np.nan)) if log else z
    label = f"log10 {value}" if log else value
    if kind == "surface3d":
        fig = go.Figure(go.Surface(x=s.xcoordinates, y=s.ycoordinates, z=_clean(shown), colorscale="Viridis",
                                   colorbar={"title": label}))
        fig.update_layout(scene={"xaxis_title": _axis_label(s, "x"), "yaxis_title": _axis_label(s, "y"), "zaxis_title": label})
    else:
        trace = go.Contour if kind == "contour" else go.Heatmap
        extra = {"contours": {"showlabels": True}, "ncontours": levels} if kind == "contour" else {}
        fig = go.Figure(trace(x=s.xcoordinates, y=s.ycoordinates, z=_clean(shown), colorscale="Viridis",
                              colorbar={"title": label}, **extra))
        if "proj_xcoord" in s.extras:
            fig.add_trace(go.Scatter(x=s.extras["proj_xcoord"], y=s.extras["proj_ycoord"], mode="lines+markers",
                                     name="trajectory", line={"color": "red"}))
        fig.update_xaxes(title_text=_axis_label(s, "x"))
        fig.update_yaxes(title_text=_axis_label(s, "y"), **({"scaleanchor": "x"} if _similar_ranges(s) else {}))
    fig.update_layout(title=f"{_title(s)} - {value}", template="plotly_white")
    return fig


def cross_sections(s: Surface, x: float, y: float, *, value: str = "train_loss", log: bool = False) -> go.Figure:
    """The two 1-D slices of a 2-D surface through the grid point nearest ``(x, y)``, that point marked."""
    along_x, along_y = s.slice("x", y), s.slice("y", x)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"along x at {along_x.attrs['slice']}",
                                                        f"along y at {along_y.attrs['slice']}"])
    for col, (cut, at) in enumerate(((along_x, x), (along_y, y)), 1):
        for name in [v for v in cut.values if v.split("_")[-1] == value.split("_")[-1]]:
            fig.add_trace(go.Scatter(x=cut.xcoordinates, y=_clean(cut.values[name]), name=name, legendgroup=name,
                                     showlegend=col == 1, line={"dash": "dash" if name.startswith("test") else "solid",
                                                                "color": "blue" if name.startswith("train") else "red"}),
                          row=1, col=col)
        fig.add_vline(x=float(cut.xcoordinates[np.argmin(np.abs(cut.xcoordinates - at))]), line={"dash": "dot",
                      "color": "gray"}, row=1, col=col)
        fig.update_xaxes(title_text=_axis_label(cut, "x"), row=1, col=col)
    fig.update_yaxes(title_text=value.split("_")[-1], type="log" if log else "linear")
    fig.update_layout(template="plotly_white", title=f"slices through the clicked point - {value}")
    return fig


def hessian_spectrum(eigenvalues: np.ndarray | None, grid: np.ndarray | None = None, density: np.ndarray | None = None,
                     *, title: str = "") -> go.Figure:
    cols = (eigenvalues is not None) + (density is not None)
    if not cols:
        raise ValueError("nothing to plot: no eigenvalues and no density")
    names = (["top Hessian eigenvalues"] if eigenvalues is not None else []) + (["spectral density (SLQ)"] if density is not None else [])
    fig = make_subplots(rows=1, cols=cols, subplot_titles=names)
    col = 1
    if eigenvalues is not None:
        fig.add_trace(go.Bar(x=np.arange(1, len(eigenvalues) + 1), y=eigenvalues, name="eigenvalues"), row=1, col=col)
        fig.update_xaxes(title_text="rank", row=1, col=col)
        col += 1
    if density is not None:
        fig.add_trace(go.Scatter(x=grid, y=np.maximum(density, 1e-12), name="density"), row=1, col=col)
        fig.update_yaxes(type="log", title_text="density", row=1, col=col)
        fig.update_xaxes(title_text="eigenvalue", row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", showlegend=False)
    return fig


def sweep_curves(sw: Sweep, *, value: str = "loss", log: bool = False) -> go.Figure:
    fig = go.Figure([_band(sw, kind, value, kind) for kind in sw.kinds])
    _sweep_axes(fig, value, log)
    fig.update_layout(title=f"{sw.attrs.get('method', '')} {sw.attrs.get('model', '')}".strip(), template="plotly_white")
    return fig


def reliability_diagram(curves: list[tuple[str, dict]], *, title: str = "") -> go.Figure:
    """One column per model: share of predictions per confidence bin (top), accuracy bars with the gap to the
    bin's mean confidence (bottom); the dotted diagonal is perfect calibration."""
    n = len(curves)
    fig = make_subplots(rows=2, cols=n, row_heights=[0.25, 0.75], shared_xaxes=True, shared_yaxes=True,
                        vertical_spacing=0.05, horizontal_spacing=0.03,
                        subplot_titles=[f"{label} (ECE {ece_from_bins(rel):.4f})" for label, rel in curves])
    for col, (label, rel) in enumerate(curves, 1):
        full = rel["count"] > 0
        centres = ((rel["edges"][:-1] + rel["edges"][1:]) / 2)[full]
        width = np.diff(rel["edges"])[full]
        acc, conf = rel["accuracy"][full], rel["confidence"][full]
        first = col == 1
        fig.add_trace(go.Bar(x=centres, y=rel["count"][full] / rel["count"].sum(), width=width, name="share",
                             marker_color="gray", showlegend=False, customdata=rel["count"][full],
                             hovertemplate="%{customdata:.0f} predictions"), row=1, col=col)
        fig.add_trace(go.Bar(x=centres, y=acc, width=width, name="accuracy", legendgroup="accuracy", showlegend=first,
                             marker_color=DEFAULT_COLORS[0], customdata=conf,
                             hovertemplate="accuracy %{y:.3f}<br>confidence %{customdata:.3f}"), row=2, col=col)
        fig.add_trace(go.Bar(x=centres, y=conf - acc, base=acc, width=width, name="gap to confidence", legendgroup="gap",
                             showlegend=first, marker={"color": "rgba(214,39,40,0.35)", "pattern": {"shape": "/"}}),
                      row=2, col=col)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", legendgroup="diag",
                                 showlegend=first, line={"color": "gray", "dash": "dot"}), row=2, col=col)
        fig.update_xaxes(range=[0, 1], row=1, col=col)
        fig.update_xaxes(range=[0, 1], title_text="confidence", row=2, col=col)
    shares = np.concatenate([rel["count"][rel["count"] > 0] / rel["count"].sum() for _, rel in curves])
    fig.update_yaxes(type="log", range=[np.log10(shares.min()) - 0.3, 0.1], row=1)
    fig.update_yaxes(range=[0, 1], row=2)
    fig.update_yaxes(title_text="share", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=2, col=1)
    fig.update_layout(title=title or "reliability diagram", template="plotly_white", barmode="overlay", bargap=0, height=480)
    return fig


def compare_slices(items: list[tuple[str, Surface]], *, log: bool = False) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy (%)"], shared_xaxes=True)
    for i, (label, s) in enumerate(items):
        colour = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        for split in s.splits:
            dash = DASH.get(split, "dot")
            for col, name in ((1, "loss"), (2, "acc")):
                if s.has(split, name):
                    fig.add_trace(go.Scatter(x=s.xcoordinates, y=_clean(s.values[f"{split}_{name}"]), name=f"{label} {split}",
                                             legendgroup=f"{label} {split}", showlegend=col == 1,
                                             line={"color": colour, "dash": dash}), row=1, col=col)
    fig.update_xaxes(title_text=_axis_label(items[0][1], "x"))
    fig.update_yaxes(type="log" if log else "linear", row=1, col=1)
    fig.update_yaxes(range=[0, 100], row=1, col=2)
    fig.update_layout(template="plotly_white", title="1-D slices")
    return fig


def compare_sweeps(items: list[tuple[str, Sweep]], *, value: str = "loss", log: bool = False) -> go.Figure:
    kinds = list(dict.fromkeys(k for _, sw in items for k in sw.kinds))
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds)
    for col, kind in enumerate(kinds, 1):
        for i, (label, sw) in enumerate(items):
            if kind in sw.kinds:
                trace = _band(sw, kind, value, label)
                trace.update(legendgroup=label, showlegend=col == 1, line={"color": DEFAULT_COLORS[i % len(DEFAULT_COLORS)]})
                fig.add_trace(trace, row=1, col=col)
    _sweep_axes(fig, value, log)
    fig.update_layout(template="plotly_white", title="loss against perturbation radius")
    return fig


def compare_spectra(items: list[tuple[str, dict]]) -> go.Figure:
    dens = [(label, a) for label, a in items if "density" in a]
    fig = make_subplots(rows=1, cols=1 + bool(dens),
                        subplot_titles=["top Hessian eigenvalues"] + (["spectral density (SLQ)"] if dens else []))
    for i, (label, a) in enumerate(items):
        colour = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        if "eigenvalues" in a:
            fig.add_trace(go.Scatter(x=np.arange(1, len(a["eigenvalues"]) + 1), y=a["eigenvalues"], name=label,
                                     legendgroup=label, mode="lines+markers", line={"color": colour}), row=1, col=1)
        if "density" in a:
            fig.add_trace(go.Scatter(x=a["density_grid"], y=np.maximum(a["density"], 1e-12), name=label, legendgroup=label,
                                     showlegend=False, line={"color": colour}), row=1, col=2)
    fig.update_xaxes(title_text="rank", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue", row=1, col=1)
    if dens:
        fig.update_xaxes(title_text="eigenvalue", row=1, col=2)
        fig.update_yaxes(title_text="density", type="log", row=1, col=2)
    fig.update_layout(template="plotly_white", title="Hessian spectra")
    return fig


def compare_surfaces(items: list[tuple[str, Surface]], *, value: str = "train_loss", log: bool = False) -> go.Figure:
    """Contours side by side on one colour axis (same limits for every run); positive values are coloured by
    their log10, as the matplotlib version spaces its levels, or the basin is one colour."""
    log = log or all(np.nanmin(s.values[value]) > 0 for _, s in items)
    zs = [np.log10(np.where(s.values[value] > 0, s.values[value], np.nan)) if log else s.values[value] for _, s in items]
    lo, hi = float(np.nanmin([np.nanmin(z) for z in zs])), float(np.nanmax([np.nanmax(z) for z in zs]))
    levels = {"showlabels": True, "start": lo, "end": hi, "size": (hi - lo) / 20 or 1}  # the same lines in every panel
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=[label for label, _ in items], shared_yaxes=True)
    for col, ((label, s), z) in enumerate(zip(items, zs), 1):
        fig.add_trace(go.Contour(x=s.xcoordinates, y=s.ycoordinates, z=_clean(z), coloraxis="coloraxis", name=label,
                                 contours=levels, autocontour=False), row=1, col=col)
        fig.update_xaxes(title_text=_axis_label(s, "x"), row=1, col=col)
    fig.update_yaxes(title_text=_axis_label(items[0][1], "y"), row=1, col=1)
    fig.update_layout(template="plotly_white", title=value,
                      coloraxis={"colorscale": "Viridis", "cmin": lo, "cmax": hi,
                                 "colorbar": {"title": f"log10 {value}" if log else value}})
    return fig


def _band(sw: Sweep, kind: str, value: str, name: str) -> go.Scatter:
    mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
    return go.Scatter(x=sw.radii, y=_clean(mean), name=name, mode="lines+markers",
                      error_y={"type": "data", "array": _clean(std), "visible": True})


def _sweep_axes(fig: go.Figure, value: str, log: bool) -> None:
    fig.update_xaxes(title_text="perturbation radius")
    fig.update_yaxes(title_text="loss" if value == "loss" else "accuracy (%)", type="log" if log else "linear")


def robustness_by_severity(items: list[tuple[str, Robustness]]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=["error (%) pooled over corruptions", "ECE pooled over corruptions"])
    for i, (label, r) in enumerate(items):
        colour = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        for col, metric in enumerate(("error", "ece"), 1):
            fig.add_trace(go.Scatter(x=[0, *r.severities], y=[r.clean(metric), *r.by_severity(metric)], name=label,
                                     legendgroup=label, showlegend=col == 1, mode="lines+markers",
                                     line={"color": colour}), row=1, col=col)
    fig.update_xaxes(title_text="severity (0 = clean)", dtick=1)
    fig.update_layout(template="plotly_white", title="corruption robustness")
    return fig


def corruption_table(labels: list[str], corruptions: list[str], values: np.ndarray, *, title: str,
                     center: float | None = None) -> go.Figure:
    extra = {"colorscale": "RdBu_r", "zmid": center} if center is not None else {"colorscale": "Viridis"}
    fig = go.Figure(go.Heatmap(x=corruptions, y=labels, z=_clean(values), texttemplate="%{z:.2f}", **extra))
    fig.update_layout(template="plotly_white", title=title, yaxis={"autorange": "reversed"})
    return fig
