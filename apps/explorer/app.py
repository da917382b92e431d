"""The Dash explorer: the page, the rescan that feeds every tab, and the file route; each tab in :mod:`.tabs`.

Every path the browser sends back is resolved under the root (:func:`resolve_under`), files are
read as HDF5/JSON only (never unpickled), and ``/files/<path>`` serves files under the root as
downloads (attachments, so no served page runs in the app's origin).
"""

from __future__ import annotations

import re
from pathlib import Path

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import abort, send_file
from werkzeug.routing import PathConverter

from .catalog import Catalog, resolve_under
from .components import CSS
from .tabs import TABS, VERSIONED


class AnyPath(PathConverter):
    """werkzeug's ``path``, but a file name may hold a newline (sent percent-encoded by the download links)."""

    regex = "[^/](?:.|\n)*?"


def layout(catalog: Catalog, refresh_ms: int) -> html.Div:
    return html.Div(
        [
            html.H2(["landscape explorer ", html.Small(str(catalog.root), style={"color": "#666"})]),
            html.Div(id="status", className="status"),
            dcc.Interval(id="tick", interval=refresh_ms),
            dcc.Store(id="snapshot"),
            *[dcc.Store(id=f"{view}-version") for view in VERSIONED],
            dcc.Tabs(id="tabs", value="runs", children=[t.tab() for t in TABS]),
        ],
        className="page",
    )


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
        Input("tick", "n_intervals"),
        State("snapshot", "data"),
    )
    def rescan(_, current):
        snap = catalog.scan()
        left_out = f"; {len(snap['problems'])} left out (listed under the runs table)" if snap["problems"] else ""
        status = (
            f"{len(snap['runs'])} runs, {len(snap['files'])} analysis files{left_out} (rescanned every {refresh_s:g} s)"
        )
        return (no_update if snap == current else snap), status

    for t in TABS:
        t.register(app, catalog)
    return app
