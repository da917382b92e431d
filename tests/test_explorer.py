"""The Dash explorer: catalog, views and security as functions, then the whole app in headless Chromium."""

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import live_writer

import landscape
from landscape.apps.explorer import views
from landscape.apps.explorer.app import create_app
from landscape.apps.explorer.catalog import Catalog, resolve_under
from landscape.apps.explorer.components import guard
from landscape.io import export_loss_landscape, read_directions, read_surface, read_sweep
from landscape.io.results import read_analysis
from landscape.io.robustness import read_robustness
from landscape.problem import Problem
from landscape.report import summary_row
from landscape.runs import find_run


@pytest.fixture
def folder(analysed, tmp_path):
    """A private copy of two analysed runs, plus a loss-landscape surface file in a folder of its own."""
    root = tmp_path / "runs"
    shutil.copytree(analysed, root)
    (root / "old").mkdir()
    s = read_surface(root / "erm" / "surface_2d.h5")
    export_loss_landscape(s, read_directions(root / "erm" / "surface_2d.h5"), root / "old" / "ll_surface.h5")
    return root


def test_resolve_under_refuses_everything_outside_the_root(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "secret.txt")
    root = tmp_path / "root"
    assert resolve_under(root, "a") == (root / "a").resolve()
    for bad in (
        "../secret.txt",
        "a/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "link",
        ".hidden/x",
        "/etc/passwd",
    ):
        with pytest.raises(PermissionError, match="outside the served folder"):
            resolve_under(root, bad)


def test_catalog_finds_runs_and_files_and_picks_up_new_ones(folder):
    cat = Catalog(folder)
    snap = cat.scan()
    kinds = {e["rel"]: e["category"] for e in snap["files"]}
    assert kinds == {
        "erm/hessian.h5": "hessian",
        "erm/surface_2d.h5": "surface_2d",
        "erm/sweep.h5": "sweep",
        "old/ll_surface.h5": "surface_2d",
        "sam/hessian.h5": "hessian",
        "sam/surface_2d.h5": "surface_2d",
        "sam/sweep.h5": "sweep",
        "erm/robustness.h5": "robustness",
        "sam/robustness.h5": "robustness",
    }
    rows = {r["run"]: r for r in views.table_rows(snap)}
    assert set(rows) == {"erm", "sam", "old"}
    expected = summary_row(find_run(folder / "sam"), 0.1)
    expected_erm = summary_row(find_run(folder / "erm"), 0.1)["test_error"]
    assert rows["sam"]["test_error"] == round(expected["test_error"], 2)
    assert rows["sam"]["lambda_max"] == round(expected["lambda_max"], 3) and rows["old"]["test_error"] is None
    shutil.copy(folder / "erm" / "sweep.h5", folder / "sam" / "sweep_b.h5")
    (folder / "sam" / ".sweep_c.h5.tmp123").write_bytes(b"partial")  # an atomic write in progress: not listed
    outside = folder.parent / "outside.h5"
    shutil.copy(folder / "erm" / "sweep.h5", outside)
    (folder / "sam" / "link.h5").symlink_to(outside)  # a link out of the root: not listed
    assert "sam/sweep_b.h5" in [e["rel"] for e in cat.scan()["files"]] and len(cat.scan()["files"]) == 10
    groups = {g["group"]: g for g in cat.scan()["groups"]}
    assert groups["erm"]["test_error"] == expected_erm and groups["erm"]["n"] == 1
    lines = (folder / "erm" / "metrics.jsonl").read_text().splitlines()
    last = {**json.loads(lines[-1]), "test_error": 42.0}
    (folder / "erm" / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    assert {g["group"]: g for g in cat.scan()["groups"]}["erm"]["test_error"] == 42.0  # regrouped on change


def test_views_draw_the_files_data(folder):
    cat = Catalog(folder)
    s = read_surface(folder / "erm" / "surface_2d.h5")
    fig, values = views.surface_figure(
        cat, "erm/surface_2d.h5", kind="heatmap", value="test_loss", log=False, levels=20
    )
    assert values == list(s.values)
    np.testing.assert_allclose(np.array(fig.data[0].z, float), s.values["test_loss"])
    ll, _ = views.surface_figure(cat, "old/ll_surface.h5", kind="contour", value="train_loss", log=True, levels=20)
    np.testing.assert_allclose(np.array(ll.data[0].z, float), np.log10(s.values["train_loss"]), rtol=1e-6)
    cut = views.slices_figure(cat, "erm/surface_2d.h5", value="train_loss", x=0.4, y=-0.9, log=False)
    along_x, along_y = [t for t in cut.data if t.name == "train loss"]
    np.testing.assert_allclose(along_x.y, s.values["train_loss"][0])  # y=-1 row, nearest to -0.9
    np.testing.assert_allclose(along_y.y, s.values["train_loss"][:, 3])  # x=0.5 column, nearest to 0.4
    h = read_analysis(folder / "sam" / "hessian.h5")[1]
    np.testing.assert_allclose(views.hessian_figure(cat, "sam/hessian.h5").data[0].y, h["eigenvalues"])
    sw = read_sweep(folder / "sam" / "sweep.h5")
    adv = sw.curve("adversarial")
    np.testing.assert_allclose(
        views.sweep_figure(cat, "sam/sweep.h5", value="loss", log=False).data[1].y, adv - adv[sw.radii == 0][0]
    )  # the increase over the unperturbed loss
    rob = read_robustness(folder / "sam" / "robustness.h5")
    by_sev, errors, ce = views.robustness_figures(cat, "sam/robustness.h5")
    np.testing.assert_allclose(by_sev.data[0].y, [rob.clean(), *rob.by_severity()])
    np.testing.assert_allclose(np.array(errors.data[0].z, float), rob.table().T)
    np.testing.assert_allclose(np.exp(np.array(ce.data[0].z, float)[0, :2]), rob.ce())  # coloured by log ratio
    assert [float(t) for t in ce.data[0].text[0][:2]] == [float(f"{v:.2f}") for v in rob.ce()]  # written as ratios
    figs = views.compare_figures(views.chosen_groups(cat, ["erm", "sam"]), log=False)
    assert [t.name for t in figs["robustness"].data if t.showlegend is not False] == ["erm", "sam"]
    assert [t.name for t in figs["sweeps"].data if t.showlegend is not False] == ["erm", "sam"]
    assert {t.coloraxis for t in figs["surfaces"].data} == {"coloraxis"}
    assert (
        "none of the chosen runs"
        in views.compare_figures(views.chosen_groups(cat, ["old"]), log=False)["sweeps"].layout.annotations[0].text
    )
    refused = guard(
        views.surface_figure, cat, "../../etc/passwd", kind="contour", value="train_loss", log=False, levels=5
    )
    assert "outside the served folder" in refused.layout.annotations[0].text and not refused.data


def connected_pair(root: Path) -> dict[str, np.ndarray]:
    """``root/pair``: the line, the aligned line and a curve between two small MLPs; each file's train loss."""
    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))  # noqa: E731
    a, b = make(), make()
    problem = Problem(a, (torch.randn(40, 4), torch.randint(0, 3, (40,))))
    pair = root / "pair"
    pair.mkdir()
    found = {
        "barrier_b": landscape.barrier(problem, b, points=5, out=pair / "barrier_b.h5", progress=False),
        "barrier_aligned_b": landscape.barrier(
            problem, b, points=5, align="weights", out=pair / "barrier_aligned_b.h5", progress=False
        ),
        "curve_b": landscape.connect(problem, b, epochs=1, points=5, out=pair / "curve_b.h5", progress=False),
    }
    return {name: r.values["train_loss"] for name, r in found.items()}


def test_the_connectivity_view_overlays_a_folders_lines_and_curves(folder):
    losses = connected_pair(folder)
    cat = Catalog(folder)
    fig = views.connectivity_figure(cat, "pair/curve_b.h5", cat.scan(), log=False)
    drawn = {t.name: t.y for t in fig.data if t.xaxis in ("x", None)}
    labels = {"barrier_b": "line", "barrier_aligned_b": "aligned line", "curve_b": "trained curve"}
    assert set(drawn) == {f"{labels[n]} ({n}), train" for n in losses}
    for name, loss in losses.items():
        np.testing.assert_allclose(drawn[f"{labels[name]} ({name}), train"], loss)


def test_large_grids_are_read_strided_with_the_edges_kept(tmp_path):
    import torch

    from landscape.io.surface import create_surface

    xs, ys = np.linspace(-1, 1, 401), np.linspace(-2, 2, 160)
    z = np.add.outer(ys, xs)
    w = create_surface(tmp_path / "s.h5", xs, ys, ["train"], [{"w": torch.zeros(1)}] * 2, {})
    w.write([(k, {"train_loss": float(z.flat[k]), "train_acc": 0.0}) for k in range(z.size)])
    w.close()
    small = views.load_surface(Catalog(tmp_path), "s.h5")
    assert len(small.xcoordinates) <= views.MAX_GRID and len(small.ycoordinates) <= views.MAX_GRID
    assert small.xcoordinates[[0, -1]].tolist() == [-1, 1] and small.ycoordinates[[0, -1]].tolist() == [-2, 2]
    np.testing.assert_array_equal(small.values["train_loss"], np.add.outer(small.ycoordinates, small.xcoordinates))


def test_a_surface_being_written_is_shown_as_far_as_it_goes(folder):
    """Another process holds the file open and fills it point by point; the explorer reads it meanwhile."""
    target = folder / "erm" / "growing.h5"
    code = f"""
        import numpy as np
        from landscape.io.results import ResultWriter
        axes = {{"xcoordinates": np.linspace(-1, 1, 4), "ycoordinates": np.linspace(-1, 1, 3)}}
        values = {{"train_loss": (), "train_acc": ()}}
        w = ResultWriter.create({str(target)!r}, "surface", (3, 4), values, axes, {{}}, {{}})
        w.write([(k, {{"train_loss": 1.0 + k, "train_acc": 50.0}}) for k in range(5)])
    """
    with live_writer(code):
        cat = Catalog(folder)
        assert "erm/growing.h5" in [e["rel"] for e in cat.scan()["files"]]
        fig, _ = views.surface_figure(cat, "erm/growing.h5", kind="heatmap", value="train_loss", log=False, levels=10)
        z = np.array(fig.data[0].z, dtype=float)
        np.testing.assert_array_equal(z.ravel()[:5], [1, 2, 3, 4, 5])
        assert np.isnan(z.ravel()[5:]).all() and "5 of 12 points computed" in fig.layout.annotations[0].text


def test_file_route_serves_only_files_under_the_root(folder):
    client = create_app(folder).server.test_client()
    got = client.get("/files/erm/sweep.h5")
    assert got.status_code == 200 and got.data == (folder / "erm" / "sweep.h5").read_bytes()
    assert "attachment" in got.headers["Content-Disposition"]
    assert client.get("/files/../../etc/passwd").status_code in (403, 404)
    assert client.get("/files/%2e%2e/%2e%2e/etc/passwd").status_code == 404
    assert client.get("/files/erm/nope.h5").status_code == 404


def test_explore_binds_localhost_by_default():
    from landscape.apps.cli.__main__ import build_parser

    args = build_parser().parse_args(["explore", "runs"])
    assert (args.host, args.port) == ("127.0.0.1", 8050)


# ---------------------------------------------------------------- in a real browser

FULL_DATA = (
    "sel => { const gd = document.querySelector(sel + ' .js-plotly-plot'); "
    "return gd && gd._fullData ? gd._fullData.map(t => ({name: t.name, type: t.type, x: t.x, y: t.y, z: t.z, "
    "coloraxis: t.coloraxis, yaxis: t.yaxis})) : null; }"
)

DATA_TO_PAGE = (
    "([sel, x, y]) => { const gd = document.querySelector(sel + ' .js-plotly-plot'); "
    "const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis; "
    "return [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(y)]; }"
)


@pytest.fixture
def shots(tmp_path):
    out = Path(os.environ.get("SCREENSHOT_DIR", tmp_path / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def serving(root: Path):
    """The explorer on the server ``landscape explore`` runs (waitress), on a free port, in a thread."""
    from landscape.apps.explorer.serving import make_server

    srv = make_server(create_app(root, refresh_s=0.5).server, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}/"
    finally:
        srv.close()
        thread.join(5)


def figure(page, graph: str, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = page.evaluate(FULL_DATA, f"#{graph}")
        if data:
            return data
        time.sleep(0.1)
    raise AssertionError(f"#{graph} drew nothing in {timeout} s")


def column(page, grid: str, field: str) -> list[str]:
    """A grid column's cells in display order (AG Grid keeps rows in the DOM in any order, with a row-index)."""
    rows = page.locator(f"#{grid} .ag-center-cols-container .ag-row").all()
    cells = {
        int(r.get_attribute("row-index")): r.locator(f".ag-cell[col-id='{field}']").inner_text().strip() for r in rows
    }
    return [cells[i] for i in sorted(cells)]


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def second_seed(folder: Path, run: str, test_error: float) -> Path:
    """A copy of ``run`` as its next seed, with another final test error: a group of two seeds."""
    other = folder / f"{run}_seed1"
    shutil.copytree(folder / run, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "seed": config["seed"] + 1}))
    rows = [json.loads(line) for line in (other / "metrics.jsonl").read_text().splitlines()]
    rows[-1]["test_error"] = test_error
    (other / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return other


def test_explorer_in_the_browser(browser, folder, shots, tmp_path):
    erm = read_surface(folder / "erm" / "surface_2d.h5")
    second_seed(folder, "erm", 7.5)
    errors_erm = [summary_row(find_run(folder / r), 0.1)["test_error"] for r in ("erm", "erm_seed1")]
    with serving(folder) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)

        # the groups: seeds of one experiment together, mean ± std as computed by hand; the flatness columns in view
        page.wait_for_selector("#groups-table .ag-cell[col-id='group']", timeout=20000)
        wait_for(lambda: "erm" in column(page, "groups-table", "group"))
        cells = dict(zip(column(page, "groups-table", "group"), column(page, "groups-table", "test_error")))
        assert cells["erm"] == f"{np.mean(errors_erm):.2f} ± {np.std(errors_erm, ddof=1):.2f}"
        assert dict(zip(column(page, "groups-table", "group"), column(page, "groups-table", "n")))["erm"] == "2"
        header = page.locator("#groups-table .ag-header-cell[col-id='n'] .ag-header-cell-text").bounding_box()
        assert header and header["height"] < 24, header  # "seeds" on one line, not broken into "seed s"
        for col in ("test_error", "sharpness", "lambda_max", "trace", "mce"):
            right = page.locator(f"#groups-table .ag-header-cell[col-id='{col}']").bounding_box()
            assert right and right["x"] + right["width"] <= 1400, col  # no horizontal scrolling for these

        # per seed, one click away: one row per run, numbers as in the run's files, sortable
        page.locator("#runs-summary").click()
        page.wait_for_selector("#runs-table .ag-cell[col-id='run']", timeout=20000)
        wait_for(lambda: len(column(page, "runs-table", "run")) == 4)
        shown = dict(zip(column(page, "runs-table", "run"), column(page, "runs-table", "test_error")))
        expected = {r: f"{summary_row(find_run(folder / r), 0.1)['test_error']:.2f}" for r in ("erm", "sam")}
        assert {r: shown[r] for r in expected} == expected
        page.locator("#runs-table .ag-header-cell[col-id='test_error'] .ag-header-cell-label").click()
        wait_for(
            lambda: (
                [float(e) for e in column(page, "runs-table", "test_error") if e]
                == sorted(float(e) for e in column(page, "runs-table", "test_error") if e)
            )
        )
        page.locator("#runs-table .ag-row[row-id='sam'] .ag-cell[col-id='run']").click()  # the run's configuration
        detail = wait_for(lambda: page.locator("#run-detail").inner_text())
        assert "rho\t0.05" in detail and "method\tsam" in detail and "file: sweep\tsam/sweep.h5" in detail
        page.screenshot(path=shots / "runs.png", full_page=True)

        # training curves from metrics.jsonl
        page.get_by_text("Training", exact=True).click()
        history = [json.loads(line) for line in (folder / "erm" / "metrics.jsonl").read_text().splitlines()]
        curve = wait_for(lambda: [t for t in figure(page, "training-graph") if t["name"] == "erm, train"])
        np.testing.assert_allclose(curve[0]["y"], [r["train_loss"] for r in history])
        np.testing.assert_allclose(curve[0]["x"], [r["epoch"] for r in history])

        # a 2-D surface: the contour holds the file's values (log10 by default), heat map and 3-D switch the trace
        page.get_by_text("Surface", exact=True).click()
        page.wait_for_selector("#surface-graph g.contour", timeout=20000)
        z = np.array(figure(page, "surface-graph")[0]["z"], float)
        np.testing.assert_allclose(z, np.log10(erm.values["train_loss"]), rtol=1e-9)  # erm/surface_2d.h5 comes first
        shown = page.evaluate("() => document.querySelector('#surface-graph .js-plotly-plot')._fullLayout.xaxis.range")
        span = erm.xcoordinates.max() - erm.xcoordinates.min()
        assert shown[1] - shown[0] < 1.1 * span, (shown, span)  # equal axes do not widen the grid's range
        page.mouse.move(*page.evaluate(DATA_TO_PAGE, ["#surface-graph", 0.5, 0.0]))
        page.mouse.click(*page.evaluate(DATA_TO_PAGE, ["#surface-graph", 0.5, 0.0]))  # the grid point x = 0.5, y = 0
        cut = wait_for(
            lambda: [t for t in (page.evaluate(FULL_DATA, "#slice-graph") or []) if t["name"] == "train loss"]
        )
        np.testing.assert_allclose(cut[0]["y"], erm.values["train_loss"][1])  # along x through y = 0
        np.testing.assert_allclose(cut[1]["y"], erm.values["train_loss"][:, 3])  # along y through x = 0.5
        page.screenshot(path=shots / "surface_contour_and_slices.png", full_page=True)
        with page.expect_download() as download:  # the drawn figure as a standalone page
            page.locator("#surface-html-button").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "surface_2d.html" and "plotly" in saved.read_text()[:100_000].lower()
        href = page.locator("#surface-download").get_attribute("href")
        assert href == "/files/erm/surface_2d.h5"
        assert page.request.get(url.rstrip("/") + href).body() == (folder / "erm" / "surface_2d.h5").read_bytes()
        page.get_by_text("surface3d", exact=True).click()
        wait_for(lambda: figure(page, "surface-graph")[0]["type"] == "surface")
        page.screenshot(path=shots / "surface_3d.png", full_page=True)

        # Hessian spectrum and sweep of the first run
        page.get_by_text("Hessian", exact=True).click()
        bars = wait_for(lambda: [t for t in figure(page, "hessian-graph") if t["type"] == "bar"])
        np.testing.assert_allclose(bars[0]["y"], read_analysis(folder / "erm" / "hessian.h5")[1]["eigenvalues"])
        page.get_by_text("Sweep", exact=True).click()
        sw = read_sweep(folder / "erm" / "sweep.h5")
        adv = wait_for(lambda: figure(page, "sweep-graph")[sw.kinds.index("adversarial")])  # a panel per kind
        np.testing.assert_allclose(adv["y"], sw.curve("adversarial") - sw.curve("adversarial")[sw.radii == 0][0])
        page.get_by_text("Robustness", exact=True).click()
        rob = read_robustness(folder / "erm" / "robustness.h5")
        by_sev = wait_for(lambda: figure(page, "robustness-0"))
        np.testing.assert_allclose(by_sev[0]["y"], [rob.clean(), *rob.by_severity()])
        page.screenshot(path=shots / "robustness.png", full_page=True)

        # compare: tick two groups, their overlays (a group's mean over its seeds), grouped table, shared colour scale
        page.get_by_text("Runs", exact=True).click()
        for group in ("erm", "sam"):
            page.locator(f"#groups-table .ag-row[row-id='{group}'] input.ag-checkbox-input").first.check()
        page.get_by_text("Compare", exact=True).click()
        sweeps = wait_for(lambda: {t["name"] for t in figure(page, "compare-sweeps")} == {"erm", "sam"})
        assert sweeps
        surfaces = figure(page, "compare-surfaces")
        assert len(surfaces) == 2 and {t["coloraxis"] for t in surfaces} == {"coloraxis"}
        widths = page.evaluate(
            "() => { const l = document.querySelector('#compare-surfaces .js-plotly-plot')._fullLayout;"
            " return [l.xaxis._length, l.xaxis2._length]; }"
        )
        assert abs(widths[0] - widths[1]) <= 1, widths  # the two panels equally wide
        wait_for(lambda: sorted(column(page, "compare-table", "group")) == ["erm", "sam"])
        assert dict(zip(column(page, "compare-table", "group"), column(page, "compare-table", "n"))) == {
            "erm": "2",
            "sam": "1",
        }
        trained = {t["name"] for t in figure(page, "compare-training")}
        assert {"erm, train", "erm, test", "sam, train", "sam, test"} <= trained
        page.locator("#compare-value").click()  # any value, not only the train loss
        page.locator(".dash-dropdown-option", has_text="test loss").click()
        wait_for(
            lambda: (
                page.evaluate("() => document.querySelector('#compare-surfaces .js-plotly-plot').layout.title.text")
                == "test loss"
            )
        )
        page.screenshot(path=shots / "compare.png", full_page=True)
        page.get_by_text("svg", exact=True).click()  # export a figure, paper-style, as SVG
        with page.expect_download() as download:
            page.locator("#export-button").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        text = saved.read_text()
        assert saved.name == "sweeps.svg" and text.startswith("<?xml") and "<svg" in text and "adversarial" in text

        # a new file appears while the page is open
        shutil.copy(folder / "sam" / "sweep.h5", folder / "old" / "late_sweep.h5")
        wait_for(lambda: "14 analysis files" in page.locator("#status").inner_text())
        page.get_by_text("Sweep", exact=True).click()
        page.locator("#sweep-file").click()
        page.locator(".dash-dropdown-option", has_text="old/late_sweep.h5").click()
        wait_for(lambda: len(figure(page, "sweep-graph")) == len(sw.kinds))

        # a 1-D surface: loss on a log axis, accuracy on its own right axis with its own ticks
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        data = (torch.randn(30, 4), torch.randint(0, 3, (30,)))
        line = landscape.surface(Problem(model, data), "-3:3:7", out=folder / "old" / "line_1d.h5", progress=False)
        wait_for(lambda: "15 analysis files" in page.locator("#status").inner_text())
        page.get_by_text("Surface", exact=True).click()
        page.locator("#surface-file").click()
        page.locator(".dash-dropdown-option", has_text="old/line_1d.h5").click()
        acc = wait_for(lambda: [t for t in figure(page, "surface-graph") if t["name"] == "train accuracy (%)"])
        np.testing.assert_allclose(acc[0]["y"], line.values["train_acc"])
        ticks = wait_for(lambda: page.locator("#surface-graph g.y2tick text").all_text_contents())
        assert ticks == ["0", "20", "40", "60", "80", "100"], ticks  # not synced to the loss axis's log ticks
        page.screenshot(path=shots / "surface_1d.png", full_page=True)

        # connectivity: the line, the aligned line and a trained curve of one folder on one pair of axes
        losses = connected_pair(folder)
        wait_for(lambda: "18 analysis files" in page.locator("#status").inner_text())
        page.get_by_text("Connectivity", exact=True).click()

        def loss_panel():  # the loss panel's lines (accuracy: y2), once all three files are drawn
            drawn = {t["name"]: t["y"] for t in figure(page, "connectivity-graph") if t["yaxis"] == "y"}
            return drawn if len(drawn) == 3 else None

        drawn = wait_for(loss_panel)
        np.testing.assert_allclose(drawn["trained curve (curve_b), train"], losses["curve_b"])
        np.testing.assert_allclose(drawn["aligned line (barrier_aligned_b), train"], losses["barrier_aligned_b"])
        page.screenshot(path=shots / "connectivity.png", full_page=True)
        assert errors == [], errors
        page.close()
    print(f"screenshots in {shots}: {json.dumps(sorted(p.name for p in shots.iterdir()))}")


def test_explore_says_in_one_line_when_the_port_is_taken(folder, capsys):
    import socket

    from landscape.apps.cli.__main__ import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["explore", str(folder), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert main(["explore", str(folder / "nope")]) == 2


def test_views_draw_trajectories_and_1d_files(runs, folder):
    from landscape._jobs import EvalOptions, random_surface, trajectory_surface

    opts = EvalOptions(samples=50, device="cpu", progress=False)
    path = trajectory_surface(
        runs / "erm", folder / "erm" / "trajectory.h5", np.linspace(-1, 1, 4), np.linspace(-1, 1, 3), opts
    )
    random_surface(runs / "erm" / "final.pt", folder / "erm" / "line.h5", np.linspace(-1, 1, 5), None, opts)
    cat = Catalog(folder)
    fig, _ = views.surface_figure(cat, "erm/trajectory.h5", kind="contour", value="train_loss", log=True, levels=10)
    path_trace = next(t for t in fig.data if t.name == "training trajectory")
    np.testing.assert_allclose(path_trace.x, read_surface(path).extras["proj_xcoord"])
    assert fig.layout.xaxis.title.text.startswith("PC1: ")
    line, _ = views.surface_figure(cat, "erm/line.h5", kind="contour", value="train_loss", log=False, levels=10)
    np.testing.assert_allclose(line.data[0].y, read_surface(folder / "erm" / "line.h5").values["train_loss"])
    assert (
        "slices are for 2-D"
        in views.slices_figure(cat, "erm/line.h5", value="train_loss", x=0, y=0, log=False).layout.annotations[0].text
    )


def test_a_view_redraws_only_when_its_own_files_change(folder):
    import os

    cat = Catalog(folder)
    before = cat.scan()
    os.utime(folder / "sam" / "sweep.h5", (1, 1))  # another file changes
    after = cat.scan()
    assert views.version(after, files=["erm/surface_2d.h5"]) == views.version(before, files=["erm/surface_2d.h5"])
    assert views.version(after, files=["sam/sweep.h5"]) != views.version(before, files=["sam/sweep.h5"])
    assert views.version(after, runs=["sam"]) != views.version(before, runs=["sam"])  # compare follows its runs
    assert views.version(after, runs=["erm"]) == views.version(before, runs=["erm"])


def hessian_request(rel: str, version) -> bytes:
    """The body Dash's renderer posts for the Hessian view's callback."""
    return json.dumps(
        {
            "output": "hessian-graph.figure",
            "outputs": {"id": "hessian-graph", "property": "figure"},
            "inputs": [
                {"id": "hessian-file", "property": "value", "value": rel},
                {"id": "hessian-version", "property": "data", "value": version},
            ],
            "changedPropIds": ["hessian-file.value"],
            "state": [],
        }
    ).encode()


def test_one_computation_serves_identical_requests_compressed(folder, monkeypatch):
    """A callback's response is computed once for identical requests (also when they arrive together), served
    gzipped to clients that take it, and computed again once the catalogue changes."""
    import gzip

    calls = []
    drawn = views.hessian_figure

    def slow(*args, **kwargs):  # long enough for the four requests to arrive while the first computes
        calls.append(args[1])
        time.sleep(0.3)
        return drawn(*args, **kwargs)

    monkeypatch.setattr(views, "hessian_figure", slow)
    app = create_app(folder)
    cache, catalog = app.server.extensions["landscape_cache"], app.server.extensions["landscape_catalog"]
    catalog.current(60)  # the first rescan, as a browser's first poll makes it
    body = hessian_request("erm/hessian.h5", [1])
    headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
    answers = []

    def ask():
        answers.append(app.server.test_client().post("/_dash-update-component", data=body, headers=headers))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["erm/hessian.h5"] and cache.misses == 1 and cache.hits == 3
    assert all(a.status_code == 200 and a.headers["Content-Encoding"] == "gzip" for a in answers)
    assert len({a.data for a in answers}) == 1
    figure = json.loads(gzip.decompress(answers[0].data))["response"]["hessian-graph"]["figure"]
    assert figure["data"][0]["y"]  # the eigenvalues, decompressed
    plain = app.server.test_client().post(
        "/_dash-update-component", data=body, headers={"Content-Type": "application/json"}
    )
    assert "Content-Encoding" not in plain.headers and json.loads(plain.data) == json.loads(
        gzip.decompress(answers[0].data)
    )
    assert answers[0].headers["X-Frame-Options"] == "DENY"  # a cached response keeps the security headers
    catalog.current(0)  # rescanned, nothing new: responses stay valid
    app.server.test_client().post("/_dash-update-component", data=body, headers=headers)
    assert len(calls) == 2  # the uncompressed request was a key of its own; the compressed one still cached
    (folder / "erm" / "extra.h5").write_bytes((folder / "erm" / "hessian.h5").read_bytes())
    catalog.current(0)  # the rescan sees the new file: a new generation
    app.server.test_client().post("/_dash-update-component", data=body, headers=headers)
    assert len(calls) == 3


def test_the_catalogue_is_scanned_once_per_interval_for_every_client(folder, monkeypatch):
    catalog = Catalog(folder)
    scans = []
    real = catalog.scan
    monkeypatch.setattr(catalog, "scan", lambda budget=None: scans.append(1) or real(budget))
    snaps = [catalog.current(max_age=60) for _ in range(20)]
    assert len(scans) == 1 and {g for _, g in snaps} == {1}
    same, generation = catalog.current(max_age=0)  # due again: rescanned, nothing new, the same generation
    assert len(scans) == 2 and generation == 1
    (folder / "erm" / "copy.h5").write_bytes((folder / "erm" / "sweep.h5").read_bytes())
    snap, generation = catalog.current(max_age=0)
    assert generation == 2 and "erm/copy.h5" in [e["rel"] for e in snap["files"]]


def test_explore_runs_on_waitress(folder):
    import urllib.request

    from landscape.apps.explorer.serving import make_server

    srv = make_server(create_app(folder).server, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.effective_port}/") as r:
            assert r.headers["Server"] == "landscape-explorer" and b"landscape explorer" in r.read()
    finally:
        srv.close()
        thread.join(5)


def test_a_rescan_opens_only_the_files_that_changed_and_a_large_folder_is_listed_at_once(folder, monkeypatch):
    import landscape.apps.explorer.catalog as catalog_module

    opened = []
    real = catalog_module.inspect_file
    monkeypatch.setattr(catalog_module, "inspect_file", lambda path: opened.append(Path(path).name) or real(path))
    catalog = Catalog(folder)
    first = catalog.scan()
    files = len(first["files"]) + sum(1 for p in first["problems"] if p["path"].endswith(".h5"))
    assert len(opened) == files  # each file opened once: by the scan, not again by its run's summary
    opened.clear()
    catalog.scan()
    assert opened == []
    with open(folder / "erm" / "sweep.h5", "ab") as f:  # the same bytes and a new time: a changed file
        f.write(b"")
    os.utime(folder / "erm" / "sweep.h5", (time.time() + 5, time.time() + 5))
    catalog.scan()
    assert opened == ["sweep.h5"]
    # no time for new files: every run is listed at once, its files follow in later scans
    fresh = Catalog(folder)
    quick = fresh.scan(budget=0)
    assert {r["run"] for r in quick["runs"]} >= {"erm", "sam"} and quick["pending"] == files
    assert fresh.scan(budget=None)["pending"] == 0 and len(fresh.scan()["files"]) == len(first["files"])


def test_links_round_trip_and_ignore_what_they_do_not_know():
    from landscape.apps.explorer.links import from_search, to_search

    values = {"surface-file": "erm/s.h5", "surface-kind": "heatmap", "surface-value": "test_loss", "surface-log": []}
    values["surface-levels"] = 20
    search = to_search("surface", values)
    assert from_search(search) == ("surface", values)
    assert from_search(to_search("compare", {"compare-runs": ["a", "b/c"], "compare-log": ["log"]})) == (
        "compare",
        {"compare-runs": ["a", "b/c"], "compare-log": ["log"]},
    )
    assert from_search("?tab=nonsense&file=x") == (None, {})
    assert from_search("?tab=surface&levels=many&other=1") == ("surface", {})


def test_a_link_copied_from_one_session_opens_the_view_in_a_fresh_one(browser, folder):
    """Choose a file, a kind, a value, a scale and the levels; the page's address then holds them: opened cold in a
    new browser context it draws the same figure; back and forward step through the views."""
    with serving(folder) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Surface", exact=True).click()
        figure(page, "surface-graph")
        page.locator("#surface-file").click()
        page.locator(".dash-dropdown-option", has_text="sam/surface_2d.h5").click()
        has = "parts => parts.every(p => location.search.includes(p))"  # the address, as pushState leaves it
        page.get_by_text("heatmap", exact=True).click()
        page.wait_for_function(has, arg=["kind=heatmap", "log=1", "sam%2Fsurface_2d.h5"], timeout=20000)
        page.locator("#surface-log input").uncheck()  # a second step in the history
        page.wait_for_function(has, arg=["kind=heatmap", "log=0", "sam%2Fsurface_2d.h5"], timeout=20000)
        drawn = figure(page, "surface-graph")
        link = page.url
        cold = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        cold.goto(link)
        again = wait_for(lambda: (d := figure(cold, "surface-graph")) and d[0]["type"] == "heatmap" and d)
        assert again[0]["z"] == drawn[0]["z"] and again[0]["x"] == drawn[0]["x"]  # the same file, value and scale
        assert cold.locator("#surface-file").inner_text().strip() == "sam/surface_2d.h5"
        assert cold.locator(".tab--selected").inner_text().strip() == "Surface"
        page.go_back()  # the log scale again
        page.wait_for_function(has, arg=["log=1", "kind=heatmap"], timeout=20000)
        wait_for(lambda: page.locator("#surface-log input").is_checked())
        page.go_forward()
        page.wait_for_function(has, arg=["log=0"], timeout=20000)
        wait_for(lambda: not page.locator("#surface-log input").is_checked())
