"""Sweep: the loss increase (or accuracy) against the perturbation radius, a panel per kind."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc

from .. import views
from ..catalog import Catalog
from ..components import LOG_SCALE, file_choice, file_tab, guard


def tab() -> dcc.Tab:
    return file_tab(
        "sweep",
        "Sweep",
        dcc.RadioItems(
            id="sweep-value",
            options=[{"label": "loss", "value": "loss"}, {"label": "accuracy", "value": "acc"}],
            value="loss",
            inline=True,
        ),
        dcc.Checklist(id="sweep-log", **LOG_SCALE),
        body=[dcc.Graph(id="sweep-graph")],
    )


def register(app: Dash, catalog: Catalog) -> None:
    file_choice(app, "sweep", ("sweep",))

    @app.callback(
        Output("sweep-graph", "figure"),
        Input("sweep-file", "value"),
        Input("sweep-value", "value"),
        Input("sweep-log", "value"),
        Input("sweep-version", "data"),
    )
    def show(rel, value, log, _):
        if not rel:
            return views.message_figure("no sweep files yet")
        return guard(views.sweep_figure, catalog, rel, value=value, log=bool(log))
