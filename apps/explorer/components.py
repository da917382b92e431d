"""Pieces every tab of the explorer uses: tables, control rows, the error guard, the version trackers."""

from __future__ import annotations

from typing import Callable

import dash_ag_grid as dag
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from . import views
from .links import wanted_choice

WIDE = {"width": "24em"}
LOG_SCALE = {"options": [{"label": " log scale", "value": "log"}], "value": [], "inline": True}
MULTI_ROW = {"rowSelection": {"mode": "multiRow"}, "animateRows": False}


def guard(build, *args, **kwargs):
    """A view's figure(s), or a message saying why not (a file mid-write is shown again on the next scan)."""
    try:
        return build(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - an untrusted or half-written file: say why, keep the app running
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return views.message_figure(f"cannot show this: {text}")


def keep(value, options: list[dict]):
    """The chosen value while it is still offered, else the first option."""
    values = [o["value"] for o in options]
    return value if value in values else (values[0] if values else None)


def controls(*children) -> html.Div:
    return html.Div(children, className="controls")


def file_tab(view: str, label: str, *extra, body: list) -> dcc.Tab:
    """A tab that shows one analysis file: its file menu (kept current by :func:`file_choice`), ``extra``
    controls beside it, then ``body``."""
    menu = dcc.Dropdown(id=f"{view}-file", placeholder=f"{label} file", clearable=False, style=WIDE)
    return dcc.Tab(label=label, value=view, children=[controls(menu, *extra), *body])


def _column(key: str, header: str, digits: int | None, spread: bool = False) -> dict:
    """A sortable, filterable column; a number printed with the report's digits (and ``± std`` in a groups table)."""
    col = {"field": key, "headerName": header, "sortable": True, "filter": True, "width": 150 if digits is None else 80}
    # headers wrap between words, never inside one ("seed s"): room for the longest word and the menu icons
    col["minWidth"] = 9 * max(len(word) for word in header.split()) + 48
    if digits is not None:
        col.update(type="numericColumn", filter="agNumberColumnFilter")
    if digits is not None and digits >= 0:
        fixed = f"params.value.toFixed({digits})"
        std = f"params.data['{key}_std'] == null ? '' : ' ± ' + params.data['{key}_std'].toFixed({digits})"
        col["valueFormatter"] = {"function": f"params.value == null ? '' : {fixed}" + (f" + ({std})" if spread else "")}
        col["width"] = 160 if spread else 112
    col["width"] = max(col["width"], col["minWidth"])
    return col


PAGING = {"pagination": True, "paginationPageSize": 100, "paginationPageSizeSelector": [20, 100, 500]}


def grid(grid_id: str, table: list[tuple], row_id: str, *, spread: bool = False, **kwargs) -> dag.AgGrid:
    """A table of runs or groups: the flatness columns first, numbers right-aligned, every column sortable and
    filterable, headers wrapped so the columns stay narrow; AG Grid's own pages of 100 rows (a sweep's thousand runs
    are sorted and filtered as a whole, drawn a page at a time)."""
    options = {**PAGING, **kwargs.pop("dashGridOptions", {})}
    return dag.AgGrid(
        id=grid_id,
        columnDefs=[_column(k, h, d, spread) for k, h, d in table],
        rowData=[],
        getRowId=f"params.data.{row_id}",
        defaultColDef={"wrapHeaderText": True, "autoHeaderHeight": True, "resizable": True},
        dashGridOptions=options,
        style={"height": "360px"} if "domLayout" not in options else {},
        **kwargs,
    )


def file_choice(
    app: Dash, view: str, categories: tuple[str, ...], depends: Callable[[dict, str], list[str]] | None = None
) -> None:
    """Keep ``<view>-file`` offering the snapshot's files of ``categories`` (the choice kept while it exists), and
    ``<view>-version`` following the chosen file (or the files ``depends(snapshot, chosen)`` names), so the view
    redraws when they change, not on every scan."""

    @app.callback(
        Output(f"{view}-file", "options"),
        Output(f"{view}-file", "value"),
        Input("snapshot", "data"),
        Input("wanted", "data"),
        State(f"{view}-file", "value"),
    )
    def offer(snap, wanted, chosen):
        if not snap:
            return no_update, no_update
        options = views.file_options(snap, categories)
        asked = wanted_choice(wanted, f"{view}-file", options)  # a link's file, once it is listed
        if asked is not None and (chosen is None or ctx.triggered_id == "wanted"):
            return options, asked
        return options, keep(chosen, options)

    track_version(app, view, f"{view}-file", "files", depends)


def track_version(
    app: Dash, view: str, chooser: str, what: str, depends: Callable[[dict, str], list[str]] | None = None
) -> None:
    """``<view>-version``: what the view shows, as (path, mtime, size) of its files or its runs' rows (``depends``:
    the files a chosen file's view also draws)."""

    @app.callback(
        Output(f"{view}-version", "data"),
        Input("snapshot", "data"),
        Input(chooser, "value"),
        State(f"{view}-version", "data"),
    )
    def follow(snap, chosen, current):
        chosen = chosen if isinstance(chosen, list) else [chosen] if chosen else []
        if depends is not None and snap:
            chosen = [rel for c in chosen for rel in depends(snap, c)]
        new = views.version(snap, **{what: chosen})
        return no_update if new == current else new


CSS = (
    ".page{font-family:system-ui,sans-serif;margin:0 1.5em}.controls{display:flex;gap:1em;align-items:center;"
    "flex-wrap:wrap;margin:0.8em 0}.status{color:#555;margin-bottom:0.5em;display:flex;align-items:center}"
    ".copy-link{display:inline-flex;align-items:center;gap:0.3em;margin-left:1.5em;cursor:pointer}"
    ".problems li{color:#a33}"
    ".download{margin-left:1em}.detail table{border-collapse:collapse;font-size:90%}"
    ".detail th{text-align:left;padding:2px 1em 2px 0;color:#444;font-weight:500}.detail td{font-family:monospace}"
    "details summary{cursor:pointer;margin:0.6em 0}"
)
