"""Robustness: error and ECE per severity, the corruption x severity table, CE against the baseline."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc

from .. import views
from ..catalog import Catalog
from ..components import file_choice, file_tab, guard


def tab() -> dcc.Tab:
    return file_tab("robustness", "Robustness", body=[dcc.Graph(id=f"robustness-{i}") for i in range(3)])


def register(app: Dash, catalog: Catalog) -> None:
    file_choice(app, "robustness", ("robustness",))

    @app.callback(
        *[Output(f"robustness-{i}", "figure") for i in range(3)],
        Input("robustness-file", "value"),
        Input("robustness-version", "data"),
    )
    def show(rel, _):
        figs = guard(views.robustness_figures, catalog, rel) if rel else views.message_figure("no robustness files yet")
        return figs if isinstance(figs, list) else [figs] * 3
