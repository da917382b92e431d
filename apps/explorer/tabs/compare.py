"""Compare: the chosen runs grouped by seed, their table and the report's overlays, and figure export."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from .. import views
from ..catalog import GROUP_COLUMNS, Catalog
from ..components import LOG_SCALE, controls, grid, guard, track_version
from ..links import wanted_choice


def tab() -> dcc.Tab:
    return dcc.Tab(
        label="Compare",
        value="compare",
        children=[
            controls(
                dcc.Dropdown(id="compare-runs", multi=True, placeholder="runs to compare", style={"width": "40em"}),
                dcc.Dropdown(
                    id="compare-value",
                    options=[{"label": v, "value": k} for k, v in views.COMPARE_VALUES.items()],
                    value="train_loss",
                    clearable=False,
                    style={"width": "11em"},
                ),
                dcc.Checklist(id="compare-log", **LOG_SCALE),
            ),
            controls(
                html.Span("export"),
                dcc.Dropdown(
                    id="export-figure",
                    options=list(views.COMPARE_FIGURES),
                    value="sweeps",
                    clearable=False,
                    style={"width": "12em"},
                ),
                dcc.RadioItems(id="export-format", options=list(views.EXPORT_TYPES), value="svg", inline=True),
                html.Button("export figure", id="export-button"),
                dcc.Download(id="export-download"),
                html.Span(id="export-status", className="problems"),
            ),
            grid("compare-table", GROUP_COLUMNS, "group", spread=True, dashGridOptions={"domLayout": "autoHeight"}),
            *[dcc.Graph(id=f"compare-{name}") for name in views.COMPARE_FIGURES],
        ],
    )


def register(app: Dash, catalog: Catalog) -> None:
    track_version(app, "compare", "compare-runs", "runs")

    @app.callback(Output("compare-runs", "options"), Input("snapshot", "data"))
    def offer(snap):
        return [r["run"] for r in snap["runs"]] if snap else no_update

    @app.callback(
        Output("compare-runs", "value"),
        Input("groups-table", "selectedRows"),
        Input("runs-table", "selectedRows"),
        Input("wanted", "data"),
        Input("snapshot", "data"),
        State("compare-runs", "value"),
        prevent_initial_call=True,
    )
    def select(groups, rows, wanted, snap, current):
        if ctx.triggered_id in ("wanted", "snapshot"):  # a link's runs, once the folder lists them
            asked = wanted_choice(wanted, "compare-runs", [r["run"] for r in (snap or {}).get("runs", [])])
            return asked if asked and (ctx.triggered_id == "wanted" or not current) else no_update
        runs = [r for g in groups or [] for r in g["runs"]] + [r["run"] for r in rows or []]
        if not runs and (wanted or {}).get("compare-runs"):
            return no_update  # the tables' empty selection as they load does not undo a link's runs
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
    def show(runs, value, log, _, snap):
        if not runs or not snap:
            return [], *[views.message_figure("choose runs to compare") for _ in views.COMPARE_FIGURES]
        groups = guard(views.chosen_groups, catalog, runs)  # each run read once for the table and the figures
        if not isinstance(groups, list):
            return [], *[groups] * len(views.COMPARE_FIGURES)
        rows = guard(views.compare_groups, groups, snap)
        figs = guard(views.compare_figures, groups, log=bool(log), value=value)
        drawn = (
            [figs[n] for n in views.COMPARE_FIGURES] if isinstance(figs, dict) else [figs] * len(views.COMPARE_FIGURES)
        )
        return (rows if isinstance(rows, list) else []), *drawn

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
        except Exception as e:  # noqa: BLE001 - say why in the page, keep the app running
            return no_update, f"cannot export {name}: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
        return dcc.send_bytes(data, f"{name}.{fmt}", type=views.EXPORT_TYPES[fmt]), ""
