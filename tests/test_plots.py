"""Figures: the expected artists and labels, not blank, and the CLI writes every file."""

import io

import matplotlib
import numpy as np
import pytest
import torch
from helpers import REPORT_FIGURES
from matplotlib.collections import QuadMesh
from matplotlib.contour import ContourSet
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from landscape.io import Surface, Sweep
from landscape.plots import mpl as plot_mpl
from landscape.plots.style import axis_label
from landscape.trainers.metrics import ece_from_bins


def not_blank(fig) -> bool:
    buf = io.BytesIO()
    plot_mpl.save(fig, buf, "png", dpi=50)
    buf.seek(0)
    pixels = matplotlib.image.imread(buf)[..., :3]
    return float(pixels.std()) > 0.05 and float((pixels < 0.9).mean()) > 0.02


def bowl(nx=7, ny=5, extras=None):
    xs, ys = np.linspace(-1, 1, nx), np.linspace(-0.5, 0.5, ny)
    X, Y = np.meshgrid(xs, ys)
    Z = 0.1 + X**2 + 3 * Y**2
    return Surface(
        "bowl.h5",
        xs,
        ys,
        {"train_loss": Z, "train_acc": 100 - Z},
        np.ones_like(Z, bool),
        {"method": "sam", "model": "small_cnn", "dataset": "digits"},
        extras=extras or {},
    )


def test_1d_has_loss_and_accuracy_axes():
    xs = np.linspace(-1, 1, 11)
    s = Surface(
        "line.h5",
        xs,
        None,
        {"train_loss": xs**2, "train_acc": 100 - xs**2, "test_loss": xs**2 + 1, "test_acc": 90 - xs**2},
        np.ones(11, bool),
        {"method": "erm"},
    )
    fig = plot_mpl.surface_1d(s)
    loss_ax, acc_ax = fig.axes
    assert [ln.get_label() for ln in loss_ax.get_lines()] == ["train loss", "test loss"]
    assert loss_ax.get_lines()[1].get_linestyle() == "--"
    np.testing.assert_array_equal(loss_ax.get_lines()[0].get_ydata(), xs**2)
    assert acc_ax.get_ylabel() == "accuracy (%)" and acc_ax.get_ylim() == (0, 100)
    assert not_blank(fig)


@pytest.mark.parametrize("kind", plot_mpl.SURFACE_2D_KINDS)
def test_2d_kinds(kind):
    fig = plot_mpl.surface_2d(bowl(), kind)
    ax = fig.axes[0]
    if kind == "surface3d":
        assert any(isinstance(c, Poly3DCollection) for c in ax.collections)
    elif kind == "heatmap":
        mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(5, 7), bowl().values["train_loss"])
    else:
        cs = next(c for c in ax.collections + ax.get_children() if isinstance(c, ContourSet))
        assert cs.levels[0] == pytest.approx(0.1) and cs.levels[-1] == pytest.approx(0.1 + 1 + 3 * 0.25)  # min, max
        if kind == "contour":
            assert len(ax.texts) > 0  # labelled contour lines
    assert ax.get_xlabel() == "x direction" and "train loss" in ax.get_title()  # human labels
    assert not_blank(fig)


def test_2d_trajectory_overlay_and_pca_labels():
    s = bowl(
        extras={
            "proj_xcoord": np.array([0.8, 0.3, 0.0]),
            "proj_ycoord": np.array([0.4, 0.1, 0.0]),
            "explained_variance_ratio_": np.array([0.9, 0.07]),
        }
    )
    s.attrs["directions"] = "pca"
    ax = plot_mpl.surface_2d(s, "contourf").axes[0]
    path = [ln for ln in ax.get_lines() if ln.get_label() == "training trajectory"][0]
    np.testing.assert_array_equal(path.get_xdata(), [0.8, 0.3, 0.0])
    assert ax.get_xlabel() == "PC1: 90.0 %" and ax.get_ylabel() == "PC2: 7.0 %"


def test_spectrum_and_sweep():
    fig = plot_mpl.hessian_spectrum(np.array([5.0, 3.0, 1.0]), np.linspace(0, 5, 50), np.exp(-np.linspace(0, 5, 50)))
    stems, dens = fig.axes
    assert dens.get_yscale() == "log" and stems.get_xlabel() == "rank" and not_blank(fig)
    radii = np.linspace(0, 1, 4)
    values = {
        "loss_mean": np.array([[0.1, 0.2, 0.4, 0.8], [0.1, 1, 2, 4]]),
        "loss_std": np.zeros((2, 4)),
        "acc_mean": np.full((2, 4), 90.0),
        "acc_std": np.zeros((2, 4)),
    }
    sw = Sweep("s.h5", radii, ["random", "adversarial"], values, np.ones((2, 4), bool), {"method": "sam"})
    fig = plot_mpl.sweep_curves(sw)
    assert [ax.get_title() for ax in fig.axes] == ["random", "adversarial"]  # a panel per kind, its own unit
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [0, 0.9, 1.9, 3.9])  # increase over r = 0
    assert "‖δ‖₂" in fig.axes[1].get_xlabel() and "0 to 1" in fig.axes[1].get_xlabel()


def test_plot_cli_draws_every_kind(runs, tmp_path):
    from landscape._jobs import EvalOptions, hessian_analysis, random_surface, sweep_analysis
    from landscape.apps.cli.__main__ import main

    opts = EvalOptions(samples=100, device="cpu", progress=False)
    ckpt = runs / "erm" / "final.pt"
    random_surface(ckpt, tmp_path / "s2.h5", np.linspace(-1, 1, 4), np.linspace(-1, 1, 3), opts)
    random_surface(ckpt, tmp_path / "s1.h5", np.linspace(-1, 1, 4), None, opts)
    hessian_analysis(ckpt, tmp_path / "h.h5", opts, top_k=2, density=True, density_probes=2, density_steps=10)
    sweep_analysis(ckpt, tmp_path / "w.h5", np.linspace(0, 0.5, 3), opts, kinds=["random"])
    files = [str(tmp_path / n) for n in ("s2.h5", "s1.h5", "h.h5", "w.h5")]
    assert main(["plot", *files, "--out", str(tmp_path / "figs"), "--format", "png,pdf"]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    stem = tmp_path.name
    for suffix in ("s2_train_loss_contour", "s2_train_loss_surface3d", "s1_1d", "h_spectrum", "w_sweep_loss"):
        assert f"{stem}_{suffix}.png" in names and f"{stem}_{suffix}.pdf" in names
    assert main(["plot", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "figs")]) == 2


def test_plotly_figures_hold_the_data():
    from landscape.plots import plotly as plot_plotly

    s = bowl()
    for kind in plot_plotly.SURFACE_2D_KINDS:
        fig = plot_plotly.surface_2d(s, kind)
        np.testing.assert_allclose(np.array(fig.data[0].z, dtype=float), s.values["train_loss"])
    s.values["train_loss"][0, 0] = np.nan  # a point not computed yet is a gap, not a crash
    assert plot_plotly.surface_2d(s, "heatmap").data[0].z[0][0] is None
    xs = np.linspace(-1, 1, 5)
    line = Surface("l.h5", xs, None, {"train_loss": xs**2, "train_acc": 100 - xs}, np.ones(5, bool), {})
    fig = plot_plotly.surface_1d(line)
    assert [t.name for t in fig.data] == ["train loss", "train accuracy (%)"] and fig.data[1].yaxis == "y2"


def test_plot_cli_writes_standalone_html_with_the_data(runs, tmp_path):
    import json
    import re

    from landscape._jobs import EvalOptions, random_surface
    from landscape.apps.cli.__main__ import main
    from landscape.io import read_surface

    out = random_surface(
        runs / "erm" / "final.pt",
        tmp_path / "s.h5",
        np.linspace(-1, 1, 3),
        np.linspace(-1, 1, 3),
        EvalOptions(samples=50, device="cpu", progress=False),
    )
    assert main(["plot", str(out), "--format", "html", "--out", str(tmp_path / "figs")]) == 0
    page = (tmp_path / "figs" / f"{tmp_path.name}_s_train_loss_heatmap.html").read_text()
    assert '<script src="http' not in page and len(page) > 1_000_000  # plotly.js embedded: works offline
    z = json.loads(re.search(r'"z":(\[\[.*?\]\])', page).group(1))
    np.testing.assert_allclose(z, read_surface(out).values["train_loss"], rtol=1e-12)


def test_vtp_is_vtk_xml_with_the_grid():
    import xml.etree.ElementTree as ET

    from landscape.plots.vtp import surface_to_vtp

    s = bowl()
    root = ET.fromstring(surface_to_vtp(s))
    piece = root.find("PolyData/Piece")
    assert root.get("type") == "PolyData" and piece.get("NumberOfPoints") == "35" and piece.get("NumberOfPolys") == "24"
    pts = np.array(piece.find("Points/DataArray").text.split(), float).reshape(-1, 3)
    np.testing.assert_allclose(pts[:, 2], s.values["train_loss"].ravel())
    np.testing.assert_allclose(pts[8], [s.xcoordinates[1], s.ycoordinates[1], s.values["train_loss"][1, 1]])
    conn = np.array(piece.find("Polys/DataArray[@Name='connectivity']").text.split(), int).reshape(-1, 4)
    assert conn[0].tolist() == [0, 1, 8, 7]
    cells = np.array(piece.find("CellData/DataArray").text.split(), float)
    assert cells[0] == pytest.approx(np.mean(pts[[0, 1, 8, 7], 2]))
    clipped = ET.fromstring(surface_to_vtp(s, zmax=1.0)).find("PolyData/Piece/Points/DataArray").text.split()
    assert max(float(v) for v in clipped[2::3]) == 1.0


def rel_bins():
    from landscape.trainers.metrics import reliability

    probs = torch.tensor([[0.9, 0.1], [0.88, 0.12], [0.3, 0.7], [0.2, 0.8], [0.45, 0.55]], dtype=torch.float64)
    return reliability(probs, torch.tensor([0, 1, 1, 1, 0]), bins=5)


def test_reliability_diagram_bars_are_bin_accuracies():
    from matplotlib.patches import Rectangle

    rel = rel_bins()
    fig = plot_mpl.reliability_diagram([("erm", rel), ("sam", rel)])
    hist, ax = fig.axes[0], fig.axes[2]  # column 0: share on top, reliability below
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    heights = sorted(round(b.get_height(), 6) for b in bars[:3])  # the accuracy bars of the 3 non-empty bins
    assert heights == sorted([0.0, 1.0, 0.5])
    assert [round(p.get_height(), 6) for p in hist.patches] == [0.2, 0.4, 0.4]
    # bins (.4,.6]: 1 wrong at .55; (.6,.8]: 2 right at .7, .8; (.8,1]: 1 of 2 right at .9, .88
    ece = (0.55 + 2 * 0.25 + 2 * abs(0.5 - 0.89)) / 5
    assert f"ECE {ece:.4f}" in " ".join(t.get_text() for t in ax.texts) and hist.get_title() == "erm"
    assert not_blank(fig)
    from landscape.plots import plotly as plot_plotly

    pfig = plot_plotly.reliability_diagram([("erm", rel)])
    np.testing.assert_allclose(pfig.data[1].y, rel["accuracy"][rel["count"] > 0])  # [share, accuracy, gap, diagonal]
    np.testing.assert_allclose(
        np.asarray(pfig.data[2].base, float) + np.asarray(pfig.data[2].y, float), rel["confidence"][rel["count"] > 0]
    )
    assert pfig.layout.annotations[0].text == f"erm (ECE {ece_from_bins(rel):.4f})"


def test_compare_figures_overlay_every_run_on_one_scale():
    from landscape.plots import plotly as plot_plotly

    a, b = bowl(), bowl()
    b.values["train_loss"] = b.values["train_loss"] * 10
    fig = plot_mpl.compare_surfaces([("erm", a), ("sam", b)])
    sets = [next(c for c in ax.get_children() if isinstance(c, ContourSet)) for ax in fig.axes[:2]]
    np.testing.assert_array_equal(sets[0].levels, sets[1].levels)  # one colour scale
    assert sets[0].levels[0] == pytest.approx(0.1) and sets[0].levels[-1] == pytest.approx(10 * (0.1 + 1 + 0.75))
    assert sets[0].norm.vmin == sets[1].norm.vmin and [ax.get_title() for ax in fig.axes[:2]] == ["erm", "sam"]
    pfig = plot_plotly.compare_surfaces([("erm", a), ("sam", b)])
    assert {t.coloraxis for t in pfig.data} == {"coloraxis"}
    assert (
        pfig.data[0].contours.start == pfig.data[1].contours.start
        and pfig.data[0].contours.size == pfig.data[1].contours.size
    )
    assert pfig.layout.coloraxis.cmax == pytest.approx(
        np.log10(10 * 1.85)
    ) and pfig.layout.coloraxis.cmin == pytest.approx(-1)

    slices = [("erm", a.slice("x", 0.0)), ("sam", b.slice("x", 0.0))]
    loss_ax = plot_mpl.compare_slices(slices).axes[0]
    assert [ln.get_label() for ln in loss_ax.get_lines()] == ["erm, train", "sam, train"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), b.values["train_loss"][2])  # the y=0 row
    radii = np.linspace(0, 1, 3)
    sweeps = [
        (
            name,
            Sweep(
                "s.h5",
                radii,
                kinds,
                {"loss_mean": np.ones((len(kinds), 3)) * k, "loss_std": np.zeros((len(kinds), 3))},
                np.ones((len(kinds), 3), bool),
                {},
            ),
        )
        for k, (name, kinds) in enumerate([("erm", ["random"]), ("sam", ["random", "adversarial"])], 1)
    ]
    fig = plot_mpl.compare_sweeps(sweeps)
    assert [ax.get_title() for ax in fig.axes] == ["random", "adversarial"]
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["erm", "sam"] and len(fig.axes[1].get_lines()) == 1
    spectra = plot_mpl.compare_spectra(
        [("erm", {"eigenvalues": np.array([3.0, 2.0])}), ("sam", {"eigenvalues": np.array([1.0])})]
    )
    np.testing.assert_array_equal(spectra.axes[0].get_lines()[0].get_ydata(), [3.0, 2.0])


def test_slice_of_a_surface():
    s = bowl()
    row, col = s.slice("x", 0.3), s.slice("y", -0.6)  # nearest grid lines: y = 0.25, x = -0.6667
    np.testing.assert_array_equal(row.values["train_loss"], s.values["train_loss"][3])
    np.testing.assert_array_equal(col.values["train_loss"], s.values["train_loss"][:, 1])
    np.testing.assert_array_equal(col.xcoordinates, s.ycoordinates)
    assert row.dim == 1 and axis_label(col, "x") == "y direction"
    with pytest.raises(ValueError, match="already 1-D"):
        row.slice("x")


def test_plot_cli_draws_checkpoints_and_robustness_files(analysed, tmp_path):
    import base64
    import json
    import re

    from landscape._jobs import EvalOptions, calibration
    from landscape.apps.cli.__main__ import main

    figs = tmp_path / "figs"
    ckpt, rob = analysed / "sam" / "final.pt", analysed / "sam" / "robustness.h5"
    assert main(["plot", str(ckpt), str(rob), "--out", str(figs), "--format", "png,html", "--device", "cpu"]) == 0
    names = {p.name for p in figs.iterdir()}
    for suffix in ("final_reliability", "robustness_by_severity", "robustness_errors", "robustness_ce"):
        assert f"sam_{suffix}.png" in names and f"sam_{suffix}.html" in names
    page = (figs / "sam_final_reliability.html").read_text()
    _, rel = calibration(ckpt, EvalOptions(device="cpu"))
    start = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page).end()
    traces, _ = json.JSONDecoder().raw_decode(page, start)
    y = next(t["y"] for t in traces if t.get("name") == "accuracy")
    acc = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else np.asarray(y)
    np.testing.assert_allclose(acc, rel["accuracy"][rel["count"] > 0])  # the page holds the bins' accuracies


# --- paper standard: palette, contrast, real units, labels, layout -------------------------------------------------


def lab(rgb, deuteranopia=False):
    """CIELAB of an sRGB colour, optionally as a deuteranope sees it (Machado, Oliveira & Fernandes 2009,
    severity 1)."""
    c = np.asarray(matplotlib.colors.to_rgb(rgb))
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    if deuteranopia:
        linear = np.clip(
            np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])
            @ linear,
            0,
            1,
        )
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def min_distance(colours, deuteranopia):
    labs = [lab(c, deuteranopia) for c in colours]
    return min(np.linalg.norm(a - b) for i, a in enumerate(labs) for b in labs[i + 1 :])


def test_series_stay_distinct_under_simulated_deuteranopia():
    from landscape.plots.style import DASHES, MARKERS, PALETTE

    seven = PALETTE[:7]  # every bundled method in one figure
    assert min_distance(seven, True) > 15  # ΔE76; matplotlib's default tab10 falls to 7.3 (green vs red)
    assert min_distance([matplotlib.colormaps["tab10"](i) for i in range(7)], True) < 10  # the check can fail
    assert len(set(MARKERS[:7])) == 7 and len({str(d) for d in DASHES[:7]}) == 7  # and a marker and dash each


def contrast(fg, bg) -> float:
    from landscape.plots.style import luminance

    a, b = sorted((luminance(matplotlib.colors.to_rgb(fg)), luminance(matplotlib.colors.to_rgb(bg))))
    return (b + 0.05) / (a + 0.05)


def test_heat_map_text_contrasts_and_ratios_are_symmetric_about_one():
    values = np.array([[0.63, 1.0, 1.5873], [0.8, 1.25, 0.9], [1.1, 0.5, 2.0]])
    fig = plot_mpl.corruption_table(["erm", "sam", "damp"], ["fog", "snow", "blur"], values, title="CE", center=1.0)
    ax = fig.axes[0]
    image = ax.get_images()[0]
    for text in ax.texts:
        j, i = (round(v) for v in text.get_position())
        cell = image.cmap(image.norm(image.get_array()[i, j]))
        assert contrast(text.get_color(), cell) >= 4.5, text.get_text()  # WCAG AA for normal text
    norm = image.norm
    assert norm(np.log(0.63)) - 0.5 == pytest.approx(0.5 - norm(np.log(1 / 0.63)))  # 0.63 as far below 1 as 1.587 above
    assert norm(np.log(1.0)) == pytest.approx(0.5)
    assert fig.axes[1].get_yticklabels()[0].get_text() in {"0.5", "0.67"}  # the colour bar reads in ratios


def test_plotly_log_surfaces_read_in_real_loss_units():
    from landscape.plots import plotly as plot_plotly

    s = bowl()
    for kind in plot_plotly.SURFACE_2D_KINDS:
        trace = plot_plotly.surface_2d(s, kind, log=True).data[0]
        np.testing.assert_allclose(np.array(trace.z, float), np.log10(s.values["train_loss"]))  # colours follow log10
        np.testing.assert_allclose(np.array(trace.customdata, float), s.values["train_loss"])  # hover reads the loss
        assert "%{customdata" in trace.hovertemplate and "%{z" not in trace.hovertemplate
        bar = trace.colorbar
        np.testing.assert_allclose(np.power(10, bar.tickvals), [float(t) for t in bar.ticktext], rtol=1e-9)
        assert min(float(t) for t in bar.ticktext) >= 0.1 and max(float(t) for t in bar.ticktext) <= 1.85
        if kind == "contour":
            assert not trace.contours.showlabels  # labels would print log10 values
    lin = plot_plotly.surface_2d(s, "contour").data[0]
    # no labels on a linear scale either: they crowd where the lines do (the colour bar and hover read the values)
    assert not lin.contours.showlabels and np.array_equal(np.array(lin.z, float), s.values["train_loss"])


def figure_texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]


def overlapping_ticks(fig) -> list[str]:
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
            bad += [
                f"{ax.get_title()}: {a} / {b}" for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)
            ]
    return bad


def test_every_comparison_figure_is_labelled_for_people(analysed):
    from landscape.groups import group_runs
    from landscape.report import overlay_figures
    from landscape.runs import find_runs

    groups = group_runs(find_runs([analysed / "erm", analysed / "sam"]))
    rel = rel_bins()
    figs = overlay_figures(groups, plot_mpl, calibration={"erm": rel, "sam": rel})
    assert set(figs) == set(REPORT_FIGURES)
    for name, fig in figs.items():
        texts = figure_texts(fig)
        assert not [t for t in texts if "_" in t and not t.startswith("$")], name  # "train loss", not "train_loss"
        assert not overlapping_ticks(fig), name
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None and name != "calibration":
                box = legend.get_window_extent(renderer)
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend over the data"
    only = overlay_figures(groups, plot_mpl, only={"surfaces"})  # the export draws just the figure asked for
    assert set(only) == {"surfaces"}
    surfaces = only["surfaces"]
    assert all(ax.get_aspect() == 1.0 for ax in surfaces.axes if ax.get_title() in ("erm", "sam"))  # equal axes
    slices = figs["slices"].axes[0]
    assert slices.get_yscale() == "log" or slices.get_ylim()[1] < 2 * max(
        np.nanmax(ln.get_ydata()) for ln in slices.get_lines()[:1]
    )  # the basins are visible


def test_sweep_bands_are_clipped_at_zero():
    radii = np.linspace(0, 1, 4)
    values = {"loss_mean": np.array([[1.0, 1.01, 1.1, 1.5]]), "loss_std": np.array([[0.0, 0.2, 0.2, 0.2]])}
    fig = plot_mpl.sweep_curves(Sweep("s.h5", radii, ["random"], values, np.ones((1, 4), bool), {}))
    band = fig.axes[0].collections[0]
    lows = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert lows.min() >= 0 and lows.max() == pytest.approx(0.7)  # increase 0.5 + std 0.2


def test_importing_the_plots_leaves_pyplot_and_its_backend_alone():
    import subprocess
    import sys

    probe = "import sys, landscape.plots.mpl; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # a user's interactive backend is theirs
