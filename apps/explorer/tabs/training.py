"""Training: loss, error and ECE per epoch from the chosen runs' metrics.jsonl, and the curvature they tracked."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, no_update

from .. import views
from ..catalog import Catalog
from ..components import controls, guard
from ..links import wanted_choice


def tab() -> dcc.Tab:
    return dcc.Tab(
        label="Training",
        value="training",
        children=[
            controls(dcc.Dropdown(id="training-runs", multi=True, placeholder="runs", style={"width": "40em"})),
            dcc.Graph(id="training-graph"),
            dcc.Graph(id="training-curvature"),
        ],
    )


def register(app: Dash, catalog: Catalog) -> None:
    @app.callback(
        Output("training-runs", "options"),
        Output("training-runs", "value"),
        Input("snapshot", "data"),
        Input("wanted", "data"),
        State("training-runs", "value"),
    )
    def offer(snap, wanted, chosen):
        if not snap:
            return no_update, no_update
        names = [r["run"] for r in snap["runs"]]
        asked = wanted_choice(wanted, "training-runs", names)  # a link's runs
        if asked and (not chosen or ctx.triggered_id == "wanted"):
            return names, asked
        return names, [r for r in chosen or [] if r in names] or names[:1]

    @app.callback(
        Output("training-graph", "figure"),
        Output("training-curvature", "figure"),
        Input("training-runs", "value"),
        Input("snapshot", "data"),
    )
    def show(runs, _):
        if not runs:
            return views.message_figure("choose runs"), views.message_figure("choose runs")
        return guard(views.training_figure, catalog, runs), guard(views.curvature_figure, catalog, runs)
