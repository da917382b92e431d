"""Surface: a 2-D surface as contour, heat map or 3-D (1-D files as curves); a click draws the slices through it."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from landscape.io.files import PLANE
from landscape.plots.plotly import SURFACE_2D_KINDS

from .. import views
from ..catalog import Catalog
from ..components import LOG_SCALE, file_choice, file_tab, guard

SURFACES = ("surface_1d", "surface_2d", PLANE)


def tab() -> dcc.Tab:
    return file_tab(
        "surface",
        "Surface",
        dcc.RadioItems(id="surface-kind", options=list(SURFACE_2D_KINDS), value="contour", inline=True),
        dcc.Dropdown(id="surface-value", value="train_loss", clearable=False, style={"width": "12em"}),
        dcc.Checklist(id="surface-log", **{**LOG_SCALE, "value": ["log"]}),
        html.Span("contour levels"),
        html.Div(dcc.Slider(id="surface-levels", min=5, max=60, step=5, value=30), style={"width": "16em"}),
        html.A("download data (.h5)", id="surface-download", href="", className="download"),
        html.Button("download figure (.html)", id="surface-html-button"),
        dcc.Download(id="surface-html"),
        body=[
            dcc.Graph(id="surface-graph", style={"height": "560px"}),
            html.P("Click a point of a 2-D surface to see the 1-D slices through it."),
            dcc.Graph(id="slice-graph", figure=views.message_figure("click a point of the surface above")),
        ],
    )


def register(app: Dash, catalog: Catalog) -> None:
    file_choice(app, "surface", SURFACES)

    @app.callback(
        Output("surface-graph", "figure"),
        Output("surface-value", "options"),
        Output("surface-value", "value"),
        Output("surface-download", "href"),
        Input("surface-file", "value"),
        Input("surface-kind", "value"),
        Input("surface-value", "value"),
        Input("surface-log", "value"),
        Input("surface-levels", "value"),
        Input("surface-version", "data"),
        Input("wanted", "data"),
    )
    def show(rel, kind, value, log, levels, _, wanted):
        if not rel:
            return views.message_figure("no surface files under this folder yet"), [], no_update, ""
        asked = (wanted or {}).get("surface-value")  # a link's value, drawn if the file holds it
        value = asked if asked and (ctx.triggered_id == "wanted" or not value) else value or "train_loss"
        drawn = guard(views.surface_figure, catalog, rel, kind=kind, value=value, log=bool(log), levels=levels)
        fig, values = drawn if isinstance(drawn, tuple) else (drawn, [value])
        return fig, values, value if value in values else no_update, views.download_href(rel)

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
        return guard(
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
