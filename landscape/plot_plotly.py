"""Interactive plotly versions of the figures in :mod:`landscape.plot_mpl` (data in, ``go.Figure`` out)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plot_mpl import _axis_label, _similar_ranges, _title
from .store import Surface, Sweep

SURFACE_2D_KINDS = ("contour", "heatmap", "surface3d")


def _clean(a: np.ndarray) -> list:
    """JSON-safe values: NaN/inf (not computed / diverged) become gaps."""
    return np.where(np.isfinite(a), a, None).tolist()


def surface_1d(s: Surface, *, log: bool = False) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for split, dash in (("train", "solid"), ("test", "dash")):
        if f"{split}_loss" in s.values:
            fig.add_trace(go.Scatter(x=s.xcoordinates, y=_clean(s.values[f"{split}_loss"]), name=f"{split} loss",
                                     line={"color": "blue", "dash": dash}), secondary_y=False)
            fig.add_trace(go.Scatter(x=s.xcoordinates, y=_clean(s.values[f"{split}_acc"]), name=f"{split} accuracy",
                                     line={"color": "red", "dash": dash}), secondary_y=True)
    fig.update_xaxes(title_text=_axis_label(s, "x"))
    fig.update_yaxes(title_text="loss", type="log" if log else "linear", secondary_y=False)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], secondary_y=True)
    fig.update_layout(title=_title(s), template="plotly_white")
    return fig


def surface_2d(s: Surface, kind: str = "contour", *, value: str = "train_loss", log: bool = False) -> go.Figure:
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
        extra = {"contours": {"showlabels": True}, "ncontours": 30} if kind == "contour" else {}
        fig = go.Figure(trace(x=s.xcoordinates, y=s.ycoordinates, z=_clean(shown), colorscale="Viridis",
                              colorbar={"title": label}, **extra))
        if "proj_xcoord" in s.extras:
            fig.add_trace(go.Scatter(x=s.extras["proj_xcoord"], y=s.extras["proj_ycoord"], mode="lines+markers",
                                     name="trajectory", line={"color": "red"}))
        fig.update_xaxes(title_text=_axis_label(s, "x"))
        fig.update_yaxes(title_text=_axis_label(s, "y"), **({"scaleanchor": "x"} if _similar_ranges(s) else {}))
    fig.update_layout(title=f"{_title(s)} - {value}", template="plotly_white")
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
    fig = go.Figure()
    for kind in sw.kinds:
        mean, std = sw.curve(kind, f"{value}_mean"), sw.curve(kind, f"{value}_std")
        fig.add_trace(go.Scatter(x=sw.radii, y=_clean(mean), name=kind, mode="lines+markers",
                                 error_y={"type": "data", "array": _clean(std), "visible": True}))
    fig.update_xaxes(title_text="perturbation radius")
    fig.update_yaxes(title_text="loss" if value == "loss" else "accuracy (%)", type="log" if log else "linear")
    fig.update_layout(title=f"{sw.attrs.get('method', '')} {sw.attrs.get('model', '')}".strip(), template="plotly_white")
    return fig
