"""Links: every view has a URL holding its tab, the file (or runs) it shows and its options; opening the URL restores
the view, and the browser's back and forward buttons step through the views.

Two ``dcc.Location``: ``url`` is read (the page's address at load, and after back/forward), ``url-out`` is written
(``refresh=False``: ``history.pushState``, no reload, and no echo into ``url``), so reading and writing are not a
cycle of callbacks. The choosers another callback already sets (a view's file, the chosen runs) are restored through
the ``wanted`` store, which those callbacks follow; the other controls are set directly.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

# per tab, the controls its URL holds: (query name, component id); every property is ``value``
LINKED: dict[str, tuple[tuple[str, str], ...]] = {
    "runs": (),
    "training": (("runs", "training-runs"),),
    "surface": (
        ("file", "surface-file"),
        ("kind", "surface-kind"),
        ("value", "surface-value"),
        ("log", "surface-log"),
        ("levels", "surface-levels"),
    ),
    "hessian": (("file", "hessian-file"),),
    "sweep": (("file", "sweep-file"), ("value", "sweep-value"), ("log", "sweep-log")),
    "robustness": (("file", "robustness-file"),),
    "connectivity": (("file", "connectivity-file"), ("log", "connectivity-log")),
    "compare": (("runs", "compare-runs"), ("value", "compare-value"), ("log", "compare-log")),
}
CONTROLS = list(dict.fromkeys(cid for pairs in LINKED.values() for _, cid in pairs))
# choosers whose options (or value) another callback sets: restored through the ``wanted`` store, which it follows
WANTED = {cid for cid in CONTROLS if cid.endswith(("-file", "-runs"))} | {"surface-value"}
DIRECT = [cid for cid in CONTROLS if cid not in WANTED]
NUMBERS = {"surface-levels"}
LOGS = {cid for cid in CONTROLS if cid.endswith("-log")}


def to_search(tab: str, values: dict[str, object]) -> str:
    """``?tab=...&name=value...`` for ``tab``'s controls (``values`` by component id; lists as repeated names, a log
    checkbox as 1/0; unset ones left out)."""
    query: list[tuple[str, str]] = [("tab", tab)]
    for name, cid in LINKED.get(tab, ()):
        value = values.get(cid)
        if cid in LOGS:
            query.append((name, "1" if value else "0"))
        elif isinstance(value, list):
            query += [(name, str(v)) for v in value]
        elif value is not None and value != "":
            query.append((name, str(value)))
    return "?" + urlencode(query)


def from_search(search: str | None) -> tuple[str | None, dict[str, object]]:
    """The tab and ``{component id: value}`` a URL's query names (unknown names and values of the wrong form are
    ignored: a link is user input)."""
    query = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
    tab = (query.get("tab") or [None])[0]
    if tab not in LINKED:
        return None, {}
    values: dict[str, object] = {}
    for name, cid in LINKED[tab]:
        given = query.get(name)
        if not given:
            continue
        if cid.endswith("-runs"):
            values[cid] = given
        elif cid in LOGS:
            values[cid] = ["log"] if given[0] == "1" else []
        elif cid in NUMBERS:
            try:
                values[cid] = int(given[0])
            except ValueError:
                continue
        else:
            values[cid] = given[0]
    return tab, values


def components() -> list:
    """The page's parts: the two locations, the wanted store, and the copy-link control."""
    return [
        dcc.Location(id="url"),
        dcc.Location(id="url-out", refresh=False),
        dcc.Store(id="wanted", data={}),
        html.Span(
            [dcc.Clipboard(id="copy-link", title="copy a link to this view"), " copy link"], className="copy-link"
        ),
    ]


def register(app: Dash) -> None:
    @app.callback(
        Output("tabs", "value"),
        *[Output(cid, "value") for cid in DIRECT],
        Output("wanted", "data"),
        Input("url", "search"),
        State("tabs", "value"),
        *[State(cid, "value") for cid in DIRECT],
    )
    def restore(search, tab, *current):
        wanted_tab, values = from_search(search)
        if wanted_tab is None:
            raise PreventUpdate
        now = dict(zip(DIRECT, current))
        out = [wanted_tab if wanted_tab != tab else no_update]
        out += [values[cid] if cid in values and values[cid] != now[cid] else no_update for cid in DIRECT]
        wanted = {cid: v for cid, v in values.items() if cid in WANTED}
        if all(v is no_update for v in out) and not wanted:
            raise PreventUpdate
        return *out, wanted

    @app.callback(
        Output("url-out", "search"),
        Output("copy-link", "content"),
        Input("tabs", "value"),
        *[Input(cid, "value") for cid in CONTROLS],
        State("url", "href"),
        prevent_initial_call=True,
    )
    def write(tab, *args):
        *values, href = args
        search = to_search(tab, dict(zip(CONTROLS, values)))
        base = (href or "").split("?")[0].split("#")[0]
        return search, base + search


def wanted_choice(wanted: dict | None, chooser: str, options: list) -> object:
    """The choice a link asks ``chooser`` to show, if the options hold it (``None``: none asked or not there)."""
    value = (wanted or {}).get(chooser)
    names = {o["value"] if isinstance(o, dict) else o for o in options}
    if isinstance(value, list):
        kept = [v for v in value if v in names]
        return kept or None
    return value if value in names else None


__all__: list[str] = []
