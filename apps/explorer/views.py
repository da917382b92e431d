"""What each explorer view shows, as plain functions of (catalog, choices) -> figures and table rows.

The Dash callbacks in :mod:`landscape.apps.explorer.app` only route inputs to these; the figures come from
:mod:`landscape.plots` and :mod:`landscape.report`, the same code as ``landscape plot`` and
``landscape compare``.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from urllib.parse import quote

import plotly.graph_objects as go

from landscape.groups import Group, curvature_curves, group_runs, history_curves, settings
from landscape.io import Surface, read_surface, read_sweep
from landscape.io.hessian import read_hessian
from landscape.io.robustness import read_robustness
from landscape.io.surface import surface_progress
from landscape.plots import plotly as plot_plotly
from landscape.plots.catalog import figures_for
from landscape.report import CONNECTIVITY_LABELS, group_stats, overlay_figures

from .catalog import (
    COLUMNS,
    GROUP_COLUMNS,
    TABLE_COLUMNS,
    Catalog,
    group_rows,
    resolve_under,
)

MAX_GRID = 151  # points per axis sent to the browser; larger grids are strided


def _rounded(rows: list[dict], table: list[tuple]) -> list[dict]:
    """Numbers rounded as the compare report prints them (a column's ``*_std`` as the column); None stays empty."""
    digits = {key: d for key, _, d in table if d is not None and d >= 0}
    digits.update({f"{k}_std": d for k, d in list(digits.items())})
    return [
        {k: (round(v, digits[k]) if k in digits and isinstance(v, (int, float)) else v) for k, v in row.items()}
        for row in rows
    ]


def table_rows(snapshot: dict) -> list[dict]:
    """Per-seed table rows."""
    return _rounded(snapshot["runs"], TABLE_COLUMNS)


def group_table_rows(snapshot: dict) -> list[dict]:
    """Groups-table rows: mean and ``*_std`` over each group's seeds."""
    return _rounded(snapshot.get("groups", []), GROUP_COLUMNS)


def file_options(snapshot: dict, categories: tuple[str, ...]) -> list[dict]:
    return [{"label": e["rel"], "value": e["rel"]} for e in snapshot["files"] if e["category"] in categories]


def version(snapshot: dict | None, *, files: list[str] = (), runs: list[str] = ()) -> list:
    """What a view depends on, as (path, mtime, size) of its files and its runs' rows: the view is redrawn only
    when this changes, not on every rescan that found some other file changed."""
    if not snapshot:
        return []
    return [[e["rel"], e["mtime"], e["size"]] for e in snapshot["files"] if e["rel"] in files or e["run"] in runs] + [
        r for r in snapshot["runs"] if r["run"] in runs
    ]


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


def surface_figure(
    catalog: Catalog, rel: str, *, kind: str, value: str, log: bool, levels: int
) -> tuple[go.Figure, list[str]]:
    """The surface drawn, and the values it holds (for the value menu): one read of the file."""
    s = load_surface(catalog, rel)
    if value not in s.values:
        value = next(iter(s.values))
    fig = (
        plot_plotly.surface_1d(s, log=log)
        if s.dim == 1
        else plot_plotly.surface_2d(s, kind, value=value, log=log, levels=levels)
    )
    done, total = surface_progress(resolve_under(catalog.root, rel))  # on the full grid, not the strided one
    if done < total:
        fig.add_annotation(
            text=f"{done} of {total} points computed so far", xref="paper", yref="paper", x=0, y=1.08, showarrow=False
        )
    fig.update_layout(uirevision=rel)  # keep zoom and camera while the file refreshes
    return fig, list(s.values)


def connectivity_files(snapshot: dict, rel: str) -> list[str]:
    """The line and curve files of ``rel``'s run folder (what its Connectivity view draws)."""
    chosen = next((e for e in snapshot["files"] if e["rel"] == rel), None)
    if chosen is None:
        return []
    return [e["rel"] for e in snapshot["files"] if e["run"] == chosen["run"] and e["category"] in CONNECTIVITY_LABELS]


def connectivity_figure(catalog: Catalog, rel: str, snapshot: dict, *, log: bool) -> go.Figure:
    """Every line and curve file of ``rel``'s run folder on one pair of axes (loss, accuracy) along t."""
    chosen = next((e for e in snapshot["files"] if e["rel"] == rel), None)
    if chosen is None:
        return message_figure(f"{rel} is no longer there")
    siblings = [e for e in snapshot["files"] if e["rel"] in connectivity_files(snapshot, rel)]
    items = [
        (f"{CONNECTIVITY_LABELS[e['category']]} ({PurePosixPath(e['rel']).stem})", load_surface(catalog, e["rel"]))
        for e in siblings
    ]
    fig = plot_plotly.compare_slices(items, log=log, title=f"from {chosen['run']} (t=0) to the other model (t=1)")
    fig.update_layout(uirevision=rel)
    return fig


def slices_figure(catalog: Catalog, rel: str, *, value: str, x: float, y: float, log: bool) -> go.Figure:
    s = load_surface(catalog, rel)
    if s.dim != 2:
        return message_figure("slices are for 2-D surfaces")
    return plot_plotly.cross_sections(s, x, y, value=value, log=log)


def hessian_figure(catalog: Catalog, rel: str) -> go.Figure:
    h = read_hessian(resolve_under(catalog.root, rel), vectors=False)
    if h.eigenvalues is None and h.density is None:
        return message_figure(
            f"{rel}: trace only ({h.trace if h.trace is not None else float('nan'):.4g}); no spectrum"
        )
    return plot_plotly.hessian_spectrum(
        h.eigenvalues, h.density_grid, h.density, title=f"{h.attrs.get('label') or h.attrs.get('method', '')} {rel}"
    )


def sweep_figure(catalog: Catalog, rel: str, *, value: str, log: bool) -> go.Figure:
    fig = plot_plotly.sweep_curves(read_sweep(resolve_under(catalog.root, rel)), value=value, log=log)
    fig.update_layout(uirevision=rel)
    return fig


def robustness_figures(catalog: Catalog, rel: str) -> list[go.Figure]:
    """Error/ECE per severity, the corruption x severity error table, and CE against the baseline (if stored)."""
    figs = figures_for(read_robustness(resolve_under(catalog.root, rel)), False, plot_plotly)
    return [figs["by_severity"], figs["errors"], figs.get("ce") or message_figure("no baseline in this file: no CE")]


COMPARE_FIGURES = (
    "training", "curvature", "slices", "sweeps", "spectra", "surfaces", "robustness", "corruption_errors",
    "connectivity",
)  # fmt: skip
COMPARE_VALUES = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
}
EXPORT_TYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}


def chosen_groups(catalog: Catalog, runs: list[str]) -> list[Group]:
    """The chosen runs, each read once, grouped by seed (a group is what of it was chosen)."""
    return group_runs([catalog.run(r) for r in runs])


def compare_groups(groups: list[Group], snapshot: dict) -> list[dict]:
    """Groups-table rows of the chosen groups, from the snapshot's rows of their runs."""
    rows = {r["run"]: r for r in snapshot["runs"]}
    groups = [Group(g.name, [r for r in g.runs if r.name in rows]) for g in groups]
    groups = [g for g in groups if g.runs]
    return _rounded(group_rows(group_stats(groups, rows, COLUMNS), rows), GROUP_COLUMNS)


def compare_figures(groups: list[Group], *, log: bool, value: str = "train_loss") -> dict[str, go.Figure]:
    """The compare report's overlays for the chosen groups (a group's mean with its spread), every name present
    (a message where none applies)."""
    figs = overlay_figures(groups, plot_plotly, log=log, max_grid=MAX_GRID, value=value)
    return {
        name: figs.get(name) or message_figure(f"none of the chosen runs has {name.replace('_', ' ')} data")
        for name in COMPARE_FIGURES
    }


def export_figure(catalog: Catalog, runs: list[str], name: str, fmt: str, *, log: bool, value: str) -> bytes:
    """One compare figure drawn by matplotlib (the report's paper-style version) as PNG, SVG or PDF bytes."""
    from landscape.plots import mpl as plot_mpl

    if fmt not in EXPORT_TYPES:
        raise ValueError(f"format {fmt!r}: one of {', '.join(EXPORT_TYPES)}")
    figs = overlay_figures(chosen_groups(catalog, runs), plot_mpl, log=log, value=value, only={name})
    if name not in figs:
        raise ValueError(f"none of the chosen runs has {name.replace('_', ' ')} data")
    buf = io.BytesIO()
    plot_mpl.save(figs[name], buf, fmt)
    return buf.getvalue()


def training_figure(catalog: Catalog, runs: list[str]) -> go.Figure:
    """Each chosen run's metrics.jsonl, epoch by epoch (no averaging: the Compare tab overlays the groups)."""
    found = [(r, catalog.run(r)) for r in runs]
    items = [(r, history_curves(run.history)) for r, run in found if run.history]
    if not items:
        return message_figure("none of the chosen runs has per-epoch metrics (metrics.jsonl)")
    return plot_plotly.training_curves(items)


def curvature_figure(catalog: Catalog, runs: list[str]) -> go.Figure:
    """Each chosen run's tracked curvature (curvature.jsonl), step by step: the edge-of-stability figure."""
    items = [(r, curvature_curves(run.curvature)) for r in runs if (run := catalog.run(r)).curvature]
    if not items:
        return message_figure("none of the chosen runs tracked its curvature (landscape train --track-curvature)")
    return plot_plotly.sharpness_curves(items)


def run_detail(catalog: Catalog, rel: str) -> list[tuple[str, str]]:
    """(name, value) rows of a run's configuration (method hyperparameters with their defaults filled in), its
    last epoch's metrics and its files."""
    run = catalog.run(rel)
    rows = [(k, _text(v)) for k, v in sorted(settings(run.config).items())]
    rows += [(f"final {k}", _text(v)) for k, v in run.metrics.items()]
    rows += [(f"file: {category}", path.relative_to(catalog.root).as_posix()) for category, path in run.files.items()]
    return rows


def _text(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
