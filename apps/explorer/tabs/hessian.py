"""Hessian: the top eigenvalues and the spectral density of one file."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc

from .. import views
from ..catalog import Catalog
from ..components import file_choice, file_tab, guard


def tab() -> dcc.Tab:
    return file_tab("hessian", "Hessian", body=[dcc.Graph(id="hessian-graph")])


def register(app: Dash, catalog: Catalog) -> None:
    file_choice(app, "hessian", ("hessian",))

    @app.callback(Output("hessian-graph", "figure"), Input("hessian-file", "value"), Input("hessian-version", "data"))
    def show(rel, _):
        return guard(views.hessian_figure, catalog, rel) if rel else views.message_figure("no Hessian files yet")
