"""The Dash explorer: layout and thin callbacks over :mod:`apps.explorer.views`.

Every path the browser sends back is resolved under the root (:func:`resolve_under`), files are
read as HDF5/JSON only (never unpickled), and ``/files/<path>`` serves files under the root as
downloads (attachments, so no served page runs in the app's origin).
"""

from __future__ import annotations

import re
from pathlib import Path

import dash_ag_grid as dag
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import abort, send_file
from werkzeug.routing import PathConverter

from landscape.plot_plotly import SURFACE_2D_KINDS

from . import views
from .catalog import GROUP_COLUMNS, TABLE_COLUMNS, Catalog, resolve_under

SURFACES = ("surface_1d", "surface_2d")
VIEWS = ("surface", "hessian", "sweep", "robustness", "compare")
WIDE = {"width": "24em"}


class AnyPath(PathConverter):
    """werkzeug's ``path``, but a file name may hold a newline (sent percent-encoded by the download links)."""

    regex = "[^/](?:.|\n)*?"


def _guard(build, *args, **kwargs):
    """A view's figure(s), or a message saying why not (a file mid-write is shown again on the next scan)."""
    try:
        return build(*args, **kwargs)
    except Exception as e:
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return views.message_figure(f"cannot show this: {text}")


def _keep(value, options: list[dict]):
    values = [o["value"] for o in options]
    return value if value in values else (values[0] if values else None)


def _controls(*children) -> html.Div:
    return html.Div(children, className="controls")


def _column(key: str, header: str, digits: int | None, spread: bool = False) -> dict:
    """A sortable, filterable column; a number printed with the report's digits (and ``± std`` in a groups table)."""
    col = {"field": key, "headerName": header, "sortable": True, "filter": True, "width": 150 if digits is None else 80}
    if digits is not None:
        col.update(type="numericColumn", filter="agNumberColumnFilter")
    if digits is not None and digits >= 0:
        fixed = f"params.value.toFixed({digits})"
        std = f"params.data['{key}_std'] == null ? '' : ' ± ' + params.data['{key}_std'].toFixed({digits})"
        col["valueFormatter"] = {"function": f"params.value == null ? '' : {fixed}" + (f" + ({std})" if spread else "")}
        col["width"] = 160 if spread else 112
    return col


def grid(grid_id: str, table: list[tuple], row_id: str, *, spread: bool = False, **kwargs) -> dag.AgGrid:
    """A table of runs or groups: the flatness columns first, numbers right-aligned, every column sortable and
    filterable, headers wrapped so the columns stay narrow."""
    return dag.AgGrid(
        id=grid_id,
        columnDefs=[_column(k, h, d, spread) for k, h, d in table],
        rowData=[],
        getRowId=f"params.data.{row_id}",
        defaultColDef={"wrapHeaderText": True, "autoHeaderHeight": True, "resizable": True},
        style={"height": "300px"} if "domLayout" not in kwargs.get("dashGridOptions", {}) else {},
        **kwargs,
    )


def layout(catalog: Catalog, refresh_ms: int) -> html.Div:
    multi = {"rowSelection": {"mode": "multiRow"}, "animateRows": False}
    checkbox = {"options": [{"label": " log scale", "value": "log"}], "value": [], "inline": True}
    return html.Div(
        [
            html.H2(["landscape explorer ", html.Small(str(catalog.root), style={"color": "#666"})]),
            html.Div(id="status", className="status"),
            dcc.Interval(id="tick", interval=refresh_ms),
            dcc.Store(id="snapshot"),
            *[dcc.Store(id=f"{view}-version") for view in VIEWS],
            dcc.Tabs(
                id="tabs",
                value="runs",
                children=[
                    dcc.Tab(
                        label="Runs",
                        value="runs",
                        children=[
                            html.P(
                                "Runs that differ only by their seed form a group: mean ± std over its seeds. "
                                "Tick groups or runs to compare them in the Compare tab; click a header to sort, "
                                "its menu to filter; click a run for its configuration."
                            ),
                            grid("groups-table", GROUP_COLUMNS, "group", spread=True, dashGridOptions=multi),
                            html.Details(
                                [
                                    html.Summary("Per seed: every run", id="runs-summary"),
                                    grid("runs-table", TABLE_COLUMNS, "run", dashGridOptions=multi),
                                ],
                                id="runs-details",
                            ),
                            html.Div(id="run-detail", className="detail"),
                            html.Div(id="problems", className="problems"),
                        ],
                    ),
                    dcc.Tab(
                        label="Training",
                        value="training",
                        children=[
                            _controls(
                                dcc.Dropdown(
                                    id="training-runs", multi=True, placeholder="runs", style={"width": "40em"}
                                )
                            ),
                            dcc.Graph(id="training-graph"),
                        ],
                    ),
                    dcc.Tab(
                        label="Surface",
                        value="surface",
                        children=[
                            _controls(
                                dcc.Dropdown(
                                    id="surface-file", placeholder="surface file", clearable=False, style=WIDE
                                ),
                                dcc.RadioItems(
                                    id="surface-kind", options=list(SURFACE_2D_KINDS), value="contour", inline=True
                                ),
                                dcc.Dropdown(
                                    id="surface-value", value="train_loss", clearable=False, style={"width": "12em"}
                                ),
                                dcc.Checklist(id="surface-log", **{**checkbox, "value": ["log"]}),
                                html.Span("contour levels"),
                                html.Div(
                                    dcc.Slider(id="surface-levels", min=5, max=60, step=5, value=30),
                                    style={"width": "16em"},
                                ),
                                html.A("download data (.h5)", id="surface-download", href="", className="download"),
                                html.Button("download figure (.html)", id="surface-html-button"),
                                dcc.Download(id="surface-html"),
                            ),
                            dcc.Graph(id="surface-graph", style={"height": "560px"}),
                            html.P("Click a point of a 2-D surface to see the 1-D slices through it."),
                            dcc.Graph(
                                id="slice-graph", figure=views.message_figure("click a point of the surface above")
                            ),
                        ],
                    ),
                    dcc.Tab(
                        label="Hessian",
                        value="hessian",
                        children=[
                            _controls(
                                dcc.Dropdown(id="hessian-file", placeholder="Hessian file", clearable=False, style=WIDE)
                            ),
                            dcc.Graph(id="hessian-graph"),
                        ],
                    ),
                    dcc.Tab(
                        label="Sweep",
                        value="sweep",
                        children=[
                            _controls(
                                dcc.Dropdown(id="sweep-file", placeholder="sweep file", clearable=False, style=WIDE),
                                dcc.RadioItems(
                                    id="sweep-value",
                                    options=[{"label": "loss", "value": "loss"}, {"label": "accuracy", "value": "acc"}],
                                    value="loss",
                                    inline=True,
                                ),
                                dcc.Checklist(id="sweep-log", **checkbox),
                            ),
                            dcc.Graph(id="sweep-graph"),
                        ],
                    ),
                    dcc.Tab(
                        label="Robustness",
                        value="robustness",
                        children=[
                            _controls(
                                dcc.Dropdown(
                                    id="robustness-file", placeholder="robustness file", clearable=False, style=WIDE
                                )
                            ),
                            *[dcc.Graph(id=f"robustness-{i}") for i in range(3)],
                        ],
                    ),
                    dcc.Tab(
                        label="Compare",
                        value="compare",
                        children=[
                            _controls(
                                dcc.Dropdown(
                                    id="compare-runs",
                                    multi=True,
                                    placeholder="runs to compare",
                                    style={"width": "40em"},
                                ),
                                dcc.Dropdown(
                                    id="compare-value",
                                    options=[{"label": v, "value": k} for k, v in views.COMPARE_VALUES.items()],
                                    value="train_loss",
                                    clearable=False,
                                    style={"width": "11em"},
                                ),
                                dcc.Checklist(id="compare-log", **checkbox),
                            ),
                            _controls(
                                html.Span("export"),
                                dcc.Dropdown(
                                    id="export-figure",
                                    options=list(views.COMPARE_FIGURES),
                                    value="sweeps",
                                    clearable=False,
                                    style={"width": "12em"},
                                ),
                                dcc.RadioItems(
                                    id="export-format", options=list(views.EXPORT_TYPES), value="svg", inline=True
                                ),
                                html.Button("export figure", id="export-button"),
                                dcc.Download(id="export-download"),
                                html.Span(id="export-status", className="problems"),
                            ),
                            grid(
                                "compare-table",
                                GROUP_COLUMNS,
                                "group",
                                spread=True,
                                dashGridOptions={"domLayout": "autoHeight"},
                            ),
                            *[dcc.Graph(id=f"compare-{name}") for name in views.COMPARE_FIGURES],
                        ],
                    ),
                ],
            ),
        ],
        className="page",
    )


def detail_table(rel: str, rows: list[tuple[str, str]]) -> html.Div:
    return html.Div([html.H4(f"run {rel}"), html.Table([html.Tr([html.Th(k), html.Td(v)]) for k, v in rows])])


def create_app(root: str | Path, *, refresh_s: float = 3.0) -> Dash:
    catalog = Catalog(root)
    app = Dash(__name__, title="landscape explorer")
    app.layout = layout(catalog, int(refresh_s * 1000))
    app.index_string = app.index_string.replace("</head>", f"<style>{CSS}</style></head>")

    app.server.url_map.converters["anypath"] = AnyPath

    @app.server.route("/files/<anypath:rel>")
    def download(rel: str):
        try:
            path = resolve_under(catalog.root, rel)
        except PermissionError:
            abort(403)
        if not path.is_file():
            abort(404)
        return send_file(path, as_attachment=True, download_name=re.sub(r"[\x00-\x1f\x7f]", "_", path.name))

    @app.callback(
        Output("snapshot", "data"),
        Output("status", "children"),
        Output("problems", "children"),
        Input("tick", "n_intervals"),
        State("snapshot", "data"),
    )
    def rescan(_, current):
        snap = catalog.scan()
        left_out = f"; {len(snap['problems'])} left out (listed under the runs table)" if snap["problems"] else ""
        status = (
            f"{len(snap['runs'])} runs, {len(snap['files'])} analysis files{left_out} (rescanned every {refresh_s:g} s)"
        )
        problems = (
            [
                html.H4("Left out"),
                html.Ul([html.Li([html.Code(p["path"]), f": {p['reason']}"]) for p in snap["problems"]]),
            ]
            if snap["problems"]
            else []
        )
        return (no_update if snap == current else snap), status, problems

    @app.callback(
        Output("runs-table", "rowData"),
        Output("groups-table", "rowData"),
        Output("runs-summary", "children"),
        Output("surface-file", "options"),
        Output("surface-file", "value"),
        Output("hessian-file", "options"),
        Output("hessian-file", "value"),
        Output("sweep-file", "options"),
        Output("sweep-file", "value"),
        Output("robustness-file", "options"),
        Output("robustness-file", "value"),
        Output("compare-runs", "options"),
        Output("training-runs", "options"),
        Output("training-runs", "value"),
        Input("snapshot", "data"),
        State("surface-file", "value"),
        State("hessian-file", "value"),
        State("sweep-file", "value"),
        State("robustness-file", "value"),
        State("training-runs", "value"),
    )
    def refresh(snap, *chosen):
        if not snap:
            return no_update
        names = [r["run"] for r in snap["runs"]]
        out = [views.table_rows(snap), views.group_table_rows(snap), f"Per seed: all {len(names)} runs"]
        for categories, value in zip((SURFACES, ("hessian",), ("sweep",), ("robustness",)), chosen[:4]):
            options = views.file_options(snap, categories)
            out += [options, _keep(value, options)]
        training = [r for r in chosen[4] or [] if r in names] or names[:1]
        return *out, names, names, training

    @app.callback(Output("run-detail", "children"), Input("runs-table", "cellClicked"), prevent_initial_call=True)
    def show_run(cell):
        rel = (cell or {}).get("rowId")
        if not rel:
            return no_update
        try:
            return detail_table(rel, views.run_detail(catalog, rel))
        except Exception as e:
            return html.P(f"cannot show {rel}: {e}")

    @app.callback(Output("training-graph", "figure"), Input("training-runs", "value"), Input("snapshot", "data"))
    def show_training(runs, _):
        if not runs:
            return views.message_figure("choose runs")
        return _guard(views.training_figure, catalog, runs)

    for view in VIEWS:  # each view redraws when its own files change, not on every rescan
        track = "compare-runs" if view == "compare" else f"{view}-file"

        @app.callback(
            Output(f"{view}-version", "data"),
            Input("snapshot", "data"),
            Input(track, "value"),
            State(f"{view}-version", "data"),
        )
        def follow(snap, chosen, current, view=view):
            chosen = chosen if isinstance(chosen, list) else [chosen] if chosen else []
            new = views.version(snap, **({"runs": chosen} if view == "compare" else {"files": chosen}))
            return no_update if new == current else new

    @app.callback(
        Output("surface-graph", "figure"),
        Output("surface-value", "options"),
        Output("surface-download", "href"),
        Input("surface-file", "value"),
        Input("surface-kind", "value"),
        Input("surface-value", "value"),
        Input("surface-log", "value"),
        Input("surface-levels", "value"),
        Input("surface-version", "data"),
    )
    def show_surface(rel, kind, value, log, levels, _):
        if not rel:
            return views.message_figure("no surface files under this folder yet"), [], ""
        drawn = _guard(views.surface_figure, catalog, rel, kind=kind, value=value, log=bool(log), levels=levels)
        fig, values = drawn if isinstance(drawn, tuple) else (drawn, [value])
        return fig, values, views.download_href(rel)

    @app.callback(
        Output("slice-graph", "figure"),
        Input("surface-graph", "clickData"),
        State("surface-file", "value"),
        State("surface-value", "value"),
        State("surface-log", "value"),
        prevent_initial_call=True,
    )
    def show_slices(click, rel, value, log):
        if not click or not rel:
            return no_update
        point = click["points"][0]
        return _guard(
            views.slices_figure, catalog, rel, value=value, x=float(point["x"]), y=float(point["y"]), log=bool(log)
        )

    @app.callback(
        Output("surface-html", "data"),
        Input("surface-html-button", "n_clicks"),
        State("surface-graph", "figure"),
        State("surface-file", "value"),
        prevent_initial_call=True,
    )
    def download_figure(_, figure, rel):
        name = Path(rel or "figure").with_suffix(".html").name
        return {"content": go.Figure(figure).to_html(include_plotlyjs=True), "filename": name}

    @app.callback(Output("hessian-graph", "figure"), Input("hessian-file", "value"), Input("hessian-version", "data"))
    def show_hessian(rel, _):
        return _guard(views.hessian_figure, catalog, rel) if rel else views.message_figure("no Hessian files yet")

    @app.callback(
        Output("sweep-graph", "figure"),
        Input("sweep-file", "value"),
        Input("sweep-value", "value"),
        Input("sweep-log", "value"),
        Input("sweep-version", "data"),
    )
    def show_sweep(rel, value, log, _):
        if not rel:
            return views.message_figure("no sweep files yet")
        return _guard(views.sweep_figure, catalog, rel, value=value, log=bool(log))

    @app.callback(
        *[Output(f"robustness-{i}", "figure") for i in range(3)],
        Input("robustness-file", "value"),
        Input("robustness-version", "data"),
    )
    def show_robustness(rel, _):
        figs = (
            _guard(views.robustness_figures, catalog, rel) if rel else views.message_figure("no robustness files yet")
        )
        return figs if isinstance(figs, list) else [figs] * 3

    @app.callback(
        Output("compare-runs", "value"),
        Input("groups-table", "selectedRows"),
        Input("runs-table", "selectedRows"),
        prevent_initial_call=True,
    )
    def select_runs(groups, rows):
        runs = [r for g in groups or [] for r in g["runs"]] + [r["run"] for r in rows or []]
        return list(dict.fromkeys(runs))

    @app.callback(
        Output("compare-table", "rowData"),
        *[Output(f"compare-{n}", "figure") for n in views.COMPARE_FIGURES],
        Input("compare-runs", "value"),
        Input("compare-value", "value"),
        Input("compare-log", "value"),
        Input("compare-version", "data"),
        State("snapshot", "data"),
    )
    def show_compare(runs, value, log, _, snap):
        if not runs or not snap:
            return [], *[views.message_figure("choose runs to compare") for _ in views.COMPARE_FIGURES]
        rows = _guard(views.compare_groups, catalog, snap, runs)
        figs = _guard(views.compare_figures, catalog, runs, log=bool(log), value=value)
        return (rows if isinstance(rows, list) else []), *(
            [figs[n] for n in views.COMPARE_FIGURES] if isinstance(figs, dict) else [figs] * len(views.COMPARE_FIGURES)
        )

    @app.callback(
        Output("export-download", "data"),
        Output("export-status", "children"),
        Input("export-button", "n_clicks"),
        State("compare-runs", "value"),
        State("export-figure", "value"),
        State("export-format", "value"),
        State("compare-value", "value"),
        State("compare-log", "value"),
        prevent_initial_call=True,
    )
    def export(_, runs, name, fmt, value, log):
        if not runs:
            return no_update, "choose runs to compare first"
        try:
            data = views.export_figure(catalog, runs, name, fmt, log=bool(log), value=value)
        except Exception as e:
            return no_update, f"cannot export {name}: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
        return dcc.send_bytes(data, f"{name}.{fmt}", type=views.EXPORT_TYPES[fmt]), ""

    return app


CSS = (
    ".page{font-family:system-ui,sans-serif;margin:0 1.5em}.controls{display:flex;gap:1em;align-items:center;"
    "flex-wrap:wrap;margin:0.8em 0}.status{color:#555;margin-bottom:0.5em}"
    ".problems li{color:#a33}"
    ".download{margin-left:1em}.detail table{border-collapse:collapse;font-size:90%}"
    ".detail th{text-align:left;padding:2px 1em 2px 0;color:#444;font-weight:500}.detail td{font-family:monospace}"
    "details summary{cursor:pointer;margin:0.6em 0}"
)
