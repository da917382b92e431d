"""Figures without defects: the checks find each class of defect, and every figure the catalogue and the comparison
draw passes them (text that collides or is cut off, axes that waste their width, file names that stutter)."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

import landscape
from landscape.groups import group_runs
from landscape.io import read
from landscape.plots import mpl
from landscape.plots.catalog import figure_file, figures_for
from landscape.plots.checks import repeated_words, text_defects, wasted_range
from landscape.report import overlay_figures
from landscape.runs import find_runs


def defects(fig) -> list[str]:
    return text_defects(fig) + wasted_range(fig)


def test_the_checks_find_each_class_of_defect():
    fig, ax = mpl._subplots(figsize=(2.0, 2.0), layout="constrained")
    ax.plot(np.linspace(-1, 1, 5), np.arange(5.0))
    ax.set_xticks(np.linspace(-1, 1, 9))  # nine labels on two inches: they run together
    assert any("x tick" in d for d in text_defects(fig))
    ax.set_xlim(-3, 3)  # a -1..1 line on -3..3
    assert wasted_range(fig) and "x shows -3..3, data -1..1" in wasted_range(fig)[0]
    fig.text(0.9, 0.5, "a label that runs past the edge of the figure")
    assert any("is cut off" in d for d in text_defects(fig))
    assert repeated_words("seed0_sweep_sweep_loss.png") == ["sweep"] and not repeated_words("seed0_sweep_loss.png")
    assert figure_file("seed0_sweep", "sweep_loss", "png") == "seed0_sweep_loss.png"
    assert figure_file("erm_surface_2d", "train_loss_contour", "svg") == "erm_surface_2d_train_loss_contour.svg"


@pytest.fixture(scope="module")
def drawn(analysed, tmp_path_factory):
    """Every file kind (a surface's four kinds, spectrum, sweeps, robustness, a line, a curve and its plane) and the
    runs of a comparison (with tracked curvature): what the figures are drawn from."""
    tmp_path = tmp_path_factory.mktemp("figures")
    root = tmp_path / "runs"
    shutil.copytree(analysed, root)
    a, b = root / "erm" / "final.pt", root / "sam" / "final.pt"
    problem = landscape.Problem.from_checkpoint(a, ["train", "test"], samples=100)
    landscape.barrier(problem, b, points=3, out=root / "erm" / "barrier_sam.h5", progress=False)
    landscape.barrier(
        problem, b, points=5, align="weights", out=root / "erm" / "barrier_aligned_sam.h5", progress=False
    )
    curve = landscape.connect(problem, b, epochs=1, points=3, out=root / "erm" / "curve_sam.h5", progress=False)
    landscape.curve_plane(problem, curve, points=3, out=tmp_path / "plane.h5", progress=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = landscape.CurvatureTracker(
        landscape.Problem(model, (x, y)), every=2, out=root / "erm" / "curvature.jsonl"
    )
    for step in range(7):
        tracker.step(step, opt)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return sorted(root.glob("*/*.h5")) + [tmp_path / "plane.h5"], [root / "erm", root / "sam"]


def all_figures(drawn, lib) -> dict:
    files, runs = drawn
    found = {}
    for f in files:
        for name, fig in figures_for(read(f), False, lib).items():
            found[f"{f.parent.name}/{f.stem}: {name}"] = fig
    overlays = overlay_figures(group_runs(find_runs(runs)), lib)
    assert {"training", "curvature", "slices", "surfaces", "sweeps", "spectra", "connectivity"} <= set(overlays)
    found.update({f"compare: {name}": fig for name, fig in overlays.items()})
    return found


def test_every_figure_passes_the_checks(drawn):
    """Each file kind's figures and every comparison overlay (training, curvature, slices, surfaces, sweeps,
    spectra, robustness, corruption errors, connectivity), and the names `landscape plot` gives them."""
    found = {name: defects(fig) for name, fig in all_figures(drawn, mpl).items()}
    assert len(found) > 25
    bad = {k: v for k, v in found.items() if v}
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())
    names = [
        figure_file(f"{f.parent.name}_{f.stem}", name, "png")  # as `landscape plot` names them
        for f in drawn[0]
        for name in figures_for(read(f), False, mpl)
    ]
    assert len(names) > 20 and [n for n in names if repeated_words(n)] == []


# the texts a plotly figure shows, with their boxes in the page; and each numeric 2-D axis's range against its data
PLOTLY_LAYOUT = """gd => {
  const texts = [...gd.querySelectorAll('svg text')].filter(t => t.textContent.trim() && !t.closest('.hoverlayer'))
    .map(t => { const r = t.getBoundingClientRect(); return {text: t.textContent.trim(), x0: r.left, x1: r.right,
                 y0: r.top, y1: r.bottom, visible: getComputedStyle(t).opacity !== '0' && r.width > 0}; })
    .filter(t => t.visible);
  const page = gd.getBoundingClientRect();
  const axes = [];
  for (const [name, ax] of Object.entries(gd._fullLayout)) {
    if (!/^xaxis[0-9]*$/.test(name) || ax.type !== 'linear' || !ax.range) continue;
    let lo = Infinity, hi = -Infinity;
    for (const t of gd._fullData) {
      if ((t.xaxis || 'x') !== ax._id || t.visible === false || !t.x) continue;
      const xs = Array.from(t.x).filter(v => typeof v === 'number' && isFinite(v)).sort((a, b) => a - b);
      if (!xs.length) continue;
      // bars and heatmap cells reach half a step past their coordinates
      const gaps = xs.slice(1).map((v, i) => v - xs[i]).filter(g => g > 0);
      const half = ['bar', 'heatmap'].includes(t.type) && gaps.length ? Math.min(...gaps) / 2 : 0;
      lo = Math.min(lo, xs[0] - half); hi = Math.max(hi, xs[xs.length - 1] + half);
    }
    if (hi > lo) axes.push({name, range: ax.range, lo, hi});
  }
  return {texts, axes, page: {x0: page.left, x1: page.right, y0: page.top, y1: page.bottom}};
}"""


def plotly_defects(layout: dict) -> list[str]:
    """Texts within a pixel of one another or cut off at the figure's edge; an x axis wider than its data by more
    than a fifth (plotly pads an autorange by up to 5 % a side)."""
    found = []
    texts, page = layout["texts"], layout["page"]
    for i, a in enumerate(texts):
        if a["x0"] < page["x0"] - 1 or a["x1"] > page["x1"] + 1 or a["y0"] < page["y0"] - 1 or a["y1"] > page["y1"] + 1:
            found.append(f"{a['text']!r} is cut off")
        for b in texts[i + 1 :]:
            if min(a["x1"], b["x1"]) - max(a["x0"], b["x0"]) > 1 and min(a["y1"], b["y1"]) - max(a["y0"], b["y0"]) > 1:
                found.append(f"{a['text']!r} overlaps {b['text']!r}")
    for ax in layout["axes"]:
        span, data = ax["range"][1] - ax["range"][0], ax["hi"] - ax["lo"]
        if data > 0 and span > 1.2 * data:
            found.append(
                f"{ax['name']} shows {ax['range'][0]:.3g}..{ax['range'][1]:.3g}, data {ax['lo']:.3g}..{ax['hi']:.3g}"
            )
    return found


def test_every_plotly_figure_passes_the_checks_in_the_browser(drawn, browser, tmp_path):
    """The explorer's renderer: each figure laid out by plotly.js in Chromium, its texts' boxes read back from the
    page (3-D scenes draw their ticks in WebGL and are left out of the text check)."""
    from landscape.plots import plotly

    figures = all_figures(drawn, plotly)
    html = "".join(
        f"<div style='width:1000px'>{fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f'f{i}')}</div>"
        for i, fig in enumerate(figures.values())
    )
    page_file = tmp_path / "figures.html"
    page_file.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{html}</body></html>")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(page_file.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(figures)}")
    found = {}
    for i, name in enumerate(figures):
        found[name] = plotly_defects(page.evaluate(PLOTLY_LAYOUT, page.locator(f"#f{i}").element_handle()))
    assert len(found) > 25
    bad = {k: v for k, v in found.items() if v}
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())
