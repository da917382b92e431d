"""What each explorer view shows, as plain functions of (catalog, choices) -> figures and table rows.

The Dash callbacks in :mod:`apps.explorer.app` only route inputs to these; the figures come from
:mod:`landscape.plot_plotly` and :mod:`landscape.report`, the same code as ``landscape plot`` and
``landscape compare``.
"""
from __future__ import annotations

from urllib.parse import quote

import plotly.graph_objects as go

from apps.cli.plot import figures_for
from landscape import plot_plotly
from landscape.report import overlay_figures
from landscape.robustness import read_robustness
from landscape.curvature import read_hessian
from landscape.store import Surface, read_surface, read_sweep, surface_progress

from .catalog import TABLE_COLUMNS, Catalog, resolve_under

MAX_GRID = 151  # points per axis sent to the browser; larger grids are strided


def table_rows(snapshot: dict) -> list[dict]:
    """Runs-table rows: numbers rounded as the compare report prints them; None stays empty."""
    digits = {key: d for key, _, d in TABLE_COLUMNS if d is not None}
    return [{k: (round(v, digits[k]) if k in digits and v is not None else v) for k, v in run.items()}
            for run in snapshot["runs"]]


def file_options(snapshot: dict, categories: tuple[str, ...]) -> list[dict]:
    return [{"label": e["rel"], "value": e["rel"]} for e in snapshot["files"] if e["category"] in categories]


def version(snapshot: dict | None, *, files: list[str] = (), runs: list[str] = ()) -> list:
    """What a view depends on, as (path, mtime, size) of its files and its runs' rows: the view is redrawn only
    when this changes, not on every rescan that found some other file changed."""
    if not snapshot:
        return []
    return ([[e["rel"], e["mtime"], e["size"]] for e in snapshot["files"] if e["rel"] in files or e["run"] in runs]
            + [r for r in snapshot["runs"] if r["run"] in runs])


def download_href(rel: str) -> str:
    """The link that downloads ``rel``: percent-encoded, so '#', '?', '%' or a newline stay part of the path."""
    return f"/files/{quote(rel)}"


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why there is nothing to show (no file yet, file mid-write, bad choice)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, font={"size": 14}, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(template="plotly_white", xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def load_surface(catalog: Catalog, rel: str) -> Surface:
    """The surface strided for the browser as it is read: a large grid is never read whole."""
    return read_surface(resolve_under(catalog.root, rel), max_points=MAX_GRID)

def surface_figure(catalog: Catalog, rel: str, *, kind: str, value: str, log: bool,
                   levels: int) -> tuple[go.Figure, list[str]]:
    """The surface drawn, and the values it holds (for the value menu): one read of the file."""
    s = load_surface(catalog, rel)
    if value not in s.values:
        value = next(iter(s.values))
    fig = plot_plotly.surface_1d(s, log=log) if s.dim == 1 else \
        plot_plotly.surface_2d(s, kind, value=value, log=log, levels=levels)
    done, total = surface_progress(resolve_under(catalog.root, rel))  # on the full grid, not the strided one
    if done < total:
        fig.add_annotation(text=f"{done} of {total} points computed so far", xref="paper", yref="paper",
                           x=0, y=1.08, showarrow=False)
    fig.update_layout(uirevision=rel)  # keep zoom and camera while the file refreshes
    return fig, list(s.values)


def slices_figure(catalog: Catalog, rel: str, *, value: str, x: float, y: float, log: bool) -> go.Figure:
    s = load_surface(catalog, rel)
    if s.dim != 2:
        return message_figure("slices are for 2-D surfaces")
    return plot_plotly.cross_sections(s, x, y, value=value, log=log)


def hessian_figure(catalog: Catalog, rel: str) -> go.Figure:
    h = read_hessian(resolve_under(catalog.root, rel), vectors=False)
    if h.eigenvalues is None and h.density is None:
        return message_figure(f"{rel}: trace only ({h.trace if h.trace is not None else float('nan'):.4g}); no spectrum")
    return plot_plotly.hessian_spectrum(h.eigenvalues, h.density_grid, h.density,
                                        title=f"{h.attrs.get('label') or h.attrs.get('method', '')} {rel}")


def sweep_figure(catalog: Catalog, rel: str, *, value: str, log: bool) -> go.Figure:
    fig = plot_plotly.sweep_curves(read_sweep(resolve_under(catalog.root, rel)), value=value, log=log)
    fig.update_layout(uirevision=rel)
    return fig


def robustness_figures(catalog: Catalog, rel: str) -> list[go.Figure]:
    """Error/ECE per severity, the corruption x severity error table, and CE against the baseline (if stored)."""
    figs = figures_for("robustness", read_robustness(resolve_under(catalog.root, rel)), False, plot_plotly)
    return [figs["by_severity"], figs["errors"], figs.get("ce") or message_figure("no baseline in this file: no CE")]


COMPARE_FIGURES = ("slices", "sweeps", "spectra", "surfaces", "robustness", "corruption_errors")


def compare_figures(catalog: Catalog, runs: list[str], *, log: bool) -> dict[str, go.Figure]:
    """The compare report's overlays for the chosen runs, every name present (a message where none applies)."""
    figs = overlay_figures([catalog.run(r) for r in runs], plot_plotly, log=log, max_grid=MAX_GRID)
    return {name: figs.get(name) or message_figure(f"none of the chosen runs has {name.replace('_', ' ')} data")
            for name in COMPARE_FIGURES}
