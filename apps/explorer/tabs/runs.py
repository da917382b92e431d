"""Runs: the groups table (mean ± std over seeds), the per-seed table, a run's configuration, files left out."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html, no_update

from .. import views
from ..catalog import GROUP_COLUMNS, TABLE_COLUMNS, Catalog
from ..components import MULTI_ROW, grid


def tab() -> dcc.Tab:
    return dcc.Tab(
        label="Runs",
        value="runs",
        children=[
            html.P(
                "Runs that differ only by their seed form a group: mean ± std over its seeds. "
                "Tick groups or runs to compare them in the Compare tab; click a header to sort, "
                "its menu to filter; click a run for its configuration."
            ),
            grid("groups-table", GROUP_COLUMNS, "group", spread=True, dashGridOptions=MULTI_ROW),
            html.Details(
                [
                    html.Summary("Per seed: every run", id="runs-summary"),
                    grid("runs-table", TABLE_COLUMNS, "run", dashGridOptions=MULTI_ROW),
                ],
                id="runs-details",
            ),
            html.Div(id="run-detail", className="detail"),
            html.Div(id="problems", className="problems"),
        ],
    )


def detail_table(rel: str, rows: list[tuple[str, str]]) -> html.Div:
    return html.Div([html.H4(f"run {rel}"), html.Table([html.Tr([html.Th(k), html.Td(v)]) for k, v in rows])])


def register(app: Dash, catalog: Catalog) -> None:
    @app.callback(
        Output("runs-table", "rowData"),
        Output("groups-table", "rowData"),
        Output("runs-summary", "children"),
        Input("snapshot", "data"),
    )
    def tables(snap):
        if not snap:
            return no_update, no_update, no_update
        return views.table_rows(snap), views.group_table_rows(snap), f"Per seed: all {len(snap['runs'])} runs"

    @app.callback(Output("problems", "children"), Input("snapshot", "data"))
    def left_out(snap):
        if not snap or not snap["problems"]:
            return []
        return [
            html.H4("Left out"),
            html.Ul([html.Li([html.Code(p["path"]), f": {p['reason']}"]) for p in snap["problems"]]),
        ]

    @app.callback(Output("run-detail", "children"), Input("runs-table", "cellClicked"), prevent_initial_call=True)
    def show_run(cell):
        rel = (cell or {}).get("rowId")
        if not rel:
            return no_update
        try:
            return detail_table(rel, views.run_detail(catalog, rel))
        except Exception as e:  # noqa: BLE001 - the run may have gone or be mid-write
            return html.P(f"cannot show {rel}: {e}")
