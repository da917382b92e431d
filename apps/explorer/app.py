"""The Dash explorer: the page, the rescan that feeds every tab, and the file route; each tab in :mod:`.tabs`.

Every path the browser sends back is resolved under the root (:func:`resolve_under`), files are
read as HDF5/JSON only (never unpickled), and ``/files/<path>`` serves files under the root as
downloads (attachments, so no served page runs in the app's origin) of the kinds it knows (analysis files and
figures), 404 for anything else. Requests whose ``Host`` is not one of the server's names are refused (DNS
rebinding), and every response carries basic security headers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Collection

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import abort, request, send_file
from werkzeug.routing import PathConverter

from landscape.io import file_category

from . import links
from .catalog import Catalog, resolve_under
from .components import CSS
from .serving import install
from .tabs import TABS, VERSIONED


class AnyPath(PathConverter):
    """werkzeug's ``path``, but a file name may hold a newline (sent percent-encoded by the download links)."""

    regex = "[^/](?:.|\n)*?"


def layout(catalog: Catalog, refresh_ms: int) -> html.Div:
    return html.Div(
        [
            html.H2(["landscape explorer ", html.Small(str(catalog.root), style={"color": "#666"})]),
            html.Div([html.Span(id="status"), *links.components()], className="status"),
            dcc.Interval(id="tick", interval=refresh_ms),
            dcc.Store(id="snapshot"),
            dcc.Store(id="generation"),  # the snapshot's generation: what each poll sends, not the snapshot
            *[dcc.Store(id=f"{view}-version") for view in VERSIONED],
            dcc.Tabs(id="tabs", value="runs", children=[t.tab() for t in TABS]),
        ],
        className="page",
    )


LOOPBACK = ("127.0.0.1", "localhost", "::1")
SERVED = (".h5", ".png", ".svg", ".pdf")  # analysis files and figures: nothing else under ROOT is sent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8050`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(
    root: str | Path, *, refresh_s: float = 3.0, hosts: Collection[str] = LOOPBACK, cache: bool = True
) -> Dash:
    """The explorer over ``root``. ``hosts``: the names a request's ``Host`` header may carry (the bound address
    and its names), so that a page of another site cannot reach the server by DNS rebinding; ``"*"`` allows any.
    ``cache=False``: no response cache nor compression (:mod:`.serving`; the load benchmark's baseline)."""
    catalog = Catalog(root)
    app = Dash(__name__, title="landscape explorer")
    app.layout = layout(catalog, int(refresh_s * 1000))
    app.index_string = app.index_string.replace("</head>", f"<style>{CSS}</style></head>")
    app.server.url_map.converters["anypath"] = AnyPath
    allowed = {h.lower() for h in hosts}

    @app.server.before_request
    def check_host():
        if "*" not in allowed and host_name(request.host.lower()) not in allowed:
            abort(400, "unknown Host header")

    @app.server.after_request
    def secure(response):
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.server.route("/files/<anypath:rel>")
    def download(rel: str):
        try:
            path = resolve_under(catalog.root, rel)
            known = path.suffix in SERVED and path.is_file() and (path.suffix != ".h5" or file_category(path))
        except (PermissionError, ValueError, OSError):  # out of ROOT, a NUL byte, a name too long: no such file
            known = False
        if not known:
            abort(404)
        return send_file(path, as_attachment=True, download_name=re.sub(r"[\x00-\x1f\x7f]", "_", path.name))

    @app.callback(
        Output("snapshot", "data"),
        Output("generation", "data"),
        Output("status", "children"),
        Input("tick", "n_intervals"),
        State("generation", "data"),
    )
    def rescan(_, seen):
        snap, generation = catalog.current(max_age=0.9 * refresh_s)
        left_out = f"; {len(snap['problems'])} left out (listed under the runs table)" if snap["problems"] else ""
        pending = f"; reading {snap['pending']:,} more" if snap["pending"] else ""
        status = (
            f"{len(snap['runs'])} runs, {len(snap['files'])} analysis files{pending}{left_out} "
            f"(rescanned every {refresh_s:g} s)"
        )
        if generation == seen:
            return no_update, no_update, status
        return snap, generation, status

    for t in TABS:
        t.register(app, catalog)
    links.register(app)
    # after the routes, so it stands in front of every response; kept where Flask keeps extensions
    if cache:
        app.server.extensions["landscape_cache"] = install(app.server, lambda: catalog.generation)
    app.server.extensions["landscape_catalog"] = catalog
    return app
