"""Figures without defects: the checks find each class of defect, and every figure the catalogue and the comparison
draw passes them (text that collides or is cut off, axes that waste their width, file names that stutter)."""

import shutil

import numpy as np
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


def test_every_figure_passes_the_checks(analysed, tmp_path):
    """Each file kind's figures (a surface's four kinds, spectrum, sweeps, robustness, a line, a curve and its
    plane) and every comparison overlay (training, curvature, slices, surfaces, sweeps, spectra, robustness,
    corruption errors, connectivity), and the names `landscape plot` gives them."""
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
    files = sorted(root.glob("*/*.h5")) + [tmp_path / "plane.h5"]
    found, names = {}, []
    for f in files:
        for name, fig in figures_for(read(f), False, mpl).items():
            found[f"{f.parent.name}/{f.stem}: {name}"] = defects(fig)
            names.append(figure_file(f"{f.parent.name}_{f.stem}", name, "png"))  # as `landscape plot` names them
    overlays = overlay_figures(group_runs(find_runs([root / "erm", root / "sam"])), mpl)
    assert {"training", "curvature", "slices", "surfaces", "sweeps", "spectra", "connectivity"} <= set(overlays)
    for name, fig in overlays.items():
        found[f"compare: {name}"] = defects(fig)
    assert len(found) > 25
    assert {k: v for k, v in found.items() if v} == {}
    assert len(names) > 20 and [n for n in names if repeated_words(n)] == []
