"""Connectivity: the loss and accuracy from one minimum to another along the straight line, the aligned line and a
trained curve, every such file of the chosen file's run folder on one pair of axes."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc

from landscape.io.files import CONNECTIVITY

from .. import views
from ..catalog import Catalog
from ..components import LOG_SCALE, file_choice, file_tab, guard


def tab() -> dcc.Tab:
    return file_tab(
        "connectivity",
        "Connectivity",
        dcc.Checklist(id="connectivity-log", **{**LOG_SCALE, "value": ["log"]}),
        body=[dcc.Graph(id="connectivity-graph", style={"height": "460px"})],
    )


def register(app: Dash, catalog: Catalog) -> None:
    file_choice(app, "connectivity", CONNECTIVITY, views.connectivity_files)  # redrawn when any of them changes

    @app.callback(
        Output("connectivity-graph", "figure"),
        Input("connectivity-file", "value"),
        Input("connectivity-log", "value"),
        Input("connectivity-version", "data"),
        State("snapshot", "data"),
    )
    def show(rel, log, _, snap):
        if not rel or not snap:
            return views.message_figure("no barrier or curve files yet (landscape barrier, landscape connect)")
        return guard(views.connectivity_figure, catalog, rel, snap, log=bool(log))
