"""Checks that find a class of figure defect, not one instance: text that collides, axes that waste their width,
file names that repeat themselves. The tests run them over every figure the catalogue draws.

- :func:`text_defects`: every visible text of a matplotlib figure (tick labels, axis labels, titles, legend
  entries, colour-bar labels) as the renderer lays it out; two boxes that intersect are a defect (tick labels of one
  axis running together, an axis label over its ticks, a title over a legend), and so is a text that reaches past
  the figure's edge (cut off in the saved file).
- :func:`wasted_range`: an axis whose view spans much more than its data (a −1..1 grid drawn on −3..3 wastes
  two thirds of the width).
- :func:`repeated_words`: a file name that says a word twice in a row (``seed0_sweep_sweep_loss.png``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

SLACK = -1.0  # boxes closer than a pixel touch: tick labels that run together read as one


def _texts(fig: Figure) -> list[tuple[str, Text]]:
    """(what, artist) of every visible, non-empty text of the figure."""
    found: list[tuple[str, Any]] = []
    for ax in fig.axes:
        name = ax.get_label() or type(ax).__name__
        axes = [("x", ax.xaxis), ("y", ax.yaxis)] + ([("z", ax.zaxis)] if hasattr(ax, "zaxis") else [])
        for letter, axis in axes:
            if not axis.get_visible():  # e.g. a twin's shared axis
                continue
            lo, hi = sorted(axis.get_view_interval())
            ticks = [t for t in axis.get_major_ticks() if lo - 1e-9 * (hi - lo) <= t.get_loc() <= hi + 1e-9 * (hi - lo)]
            found += [(f"{name} {letter} tick", label) for tick in ticks for label in (tick.label1, tick.label2)]
            found.append((f"{name} {letter} label", axis.label))
        titles = [ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)]
        found += [(f"{name} title", t) for t in titles if t is not None]
        legend = ax.get_legend()
        if legend is not None:
            found += [(f"{name} legend", t) for t in legend.get_texts()]
    for legend in fig.legends:
        found += [("figure legend", t) for t in legend.get_texts()]
    found += [("figure text", t) for t in fig.texts]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None:
        found.append(("figure title", suptitle))
    seen: set[int] = set()  # the suptitle is also among the figure's texts
    unique = [(what, t) for what, t in found if not (id(t) in seen or seen.add(id(t)))]  # type: ignore[func-returns-value]
    return [(what, t) for what, t in unique if t.get_visible() and t.get_text().strip()]


def _inside(box: Bbox, other: Bbox) -> bool:
    return (
        box.x0 < other.x1 - SLACK
        and other.x0 < box.x1 - SLACK
        and box.y0 < other.y1 - SLACK
        and (other.y0 < box.y1 - SLACK)
    )


def text_defects(fig: Figure) -> list[str]:
    """Texts that collide (their laid-out boxes closer than a pixel) or reach past the figure's edge (cut off in the
    saved file), after one draw: ``"what 'text' / what 'text'"`` and ``"what 'text' is cut off"``."""
    fig.draw_without_rendering()  # the layout and every text's place, no pixels
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = _texts(fig)
    edge, found = fig.bbox, []
    for what, t in texts:
        box = t.get_window_extent(renderer)
        if box.x0 < edge.x0 - 1 or box.y0 < edge.y0 - 1 or box.x1 > edge.x1 + 1 or box.y1 > edge.y1 + 1:
            found.append(f"{what} {t.get_text()!r} is cut off")
    # a text at an angle other than a right one has an axis-aligned box far larger than its letters (3-D axis
    # names): such texts are not compared
    boxes = [(what, t.get_text(), t.get_window_extent(renderer)) for what, t in texts if t.get_rotation() % 90 < 1e-6]
    for i, (wa, ta, a) in enumerate(boxes):
        for wb, tb, b in boxes[i + 1 :]:
            if _inside(a, b):
                found.append(f"{wa} {ta!r} / {wb} {tb!r}")
    return found


def wasted_range(fig: Figure, limit: float = 0.1) -> list[str]:
    """2-D axes whose x view spans more than their data (matplotlib's ``dataLim``, margins allowed for) by over
    ``limit`` of the axis: ``"axes: x shows a..b, data a..b"``. (The y of a curve keeps its own conventions, e.g.
    accuracy on 0-100.)"""
    found = []
    for ax in fig.axes:
        if hasattr(ax, "zaxis") or not ax.has_data():
            continue
        log = ax.get_xscale() == "log"
        data = np.asarray(ax.dataLim.intervalx, float)
        view = np.asarray(ax.get_xlim(), float)
        if log:
            if min(*data, *view) <= 0:
                continue
            data, view = np.log10(data), np.log10(view)
        span, shown = float(data[1] - data[0]), abs(float(view[1] - view[0]))
        if not (np.isfinite(span) and span > 0 and shown > 0):
            continue
        if span * (1 + 2 * ax.get_xmargin()) < (1 - limit) * shown:
            what = ax.get_label() or ax.get_title() or "axes"
            found.append(f"{what}: x shows {view[0]:.3g}..{view[1]:.3g}, data {data[0]:.3g}..{data[1]:.3g}")
    return found


def repeated_words(name: str | Path) -> list[str]:
    """Words a file name says twice in a row (split on ``_``, ``-``, ``.`` and spaces)."""
    words = [w.lower() for w in re.split(r"[_\-. ]+", Path(name).stem) if w]
    return [a for a, b in zip(words, words[1:]) if a == b]


__all__: list[str] = []  # the tests' and the catalogue's checks: not public API
