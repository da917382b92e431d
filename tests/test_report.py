"""`landscape compare`: the table's numbers are the source files' numbers; the pages hold the figures."""

import json
import re

import numpy as np
import pytest
from helpers import REPORT_FIGURES

from landscape._jobs import EvalOptions, calibration
from landscape.apps.cli.__main__ import main
from landscape.io import Sweep, read_surface, read_sweep
from landscape.io.results import read_analysis
from landscape.io.robustness import read_robustness
from landscape.report import sweep_sharpness
from landscape.trainers import read_checkpoint


def test_sharpness_interpolates_between_radii():
    sw = Sweep(
        "s.h5",
        np.array([0.0, 0.2, 0.4]),
        ["adversarial"],
        {"loss_mean": np.array([[1.0, 3.0, 7.0]])},
        np.ones((1, 3), bool),
        {},
    )
    assert sweep_sharpness(sw, 0.2) == pytest.approx(2.0) and sweep_sharpness(sw, 0.3) == pytest.approx(4.0)
    assert np.isnan(sweep_sharpness(sw, 0.5)) and np.isnan(sweep_sharpness(sw, 0.1, kind="random"))


def test_compare_table_equals_source_files(analysed, tmp_path, capsys):
    out = tmp_path / "report"
    (analysed / "sam" / "zz_extra.h5").write_bytes((analysed / "sam" / "sweep.h5").read_bytes())
    try:
        assert main(["compare", str(analysed / "erm"), str(analysed / "sam"), "--out", str(out), "--rho", "0.1"]) == 0
    finally:
        (analysed / "sam" / "zz_extra.h5").unlink()
    assert "sam: ignoring zz_extra.h5 (one sweep file per run: using sweep.h5)" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines()]
    grouped = {cells[0]: cells for cells in lines if len(cells) == 11 and cells[0] in ("erm", "sam")}  # group, n, 9
    rows = {
        cells[0]: cells for cells in lines if len(cells) == 12 and cells[0] in ("erm", "sam")
    }  # run, group, seed, 9
    summary = json.loads((out / "summary.json").read_text())
    for method in ("erm", "sam"):
        run = analysed / method
        history = read_checkpoint(run / "final.pt")["metrics"]
        h = read_analysis(run / "hessian.h5", "hessian")[1]
        sw = read_sweep(run / "sweep.h5")
        adv = sw.curve("adversarial")
        rob = read_robustness(run / "robustness.h5")
        expected = {
            "test_error": history[-1]["test_error"],
            "test_nll": history[-1]["test_nll"],
            "test_ece": history[-1]["test_ece"],
            "lambda_max": h["eigenvalues"][0],
            "trace": h["trace"],
            "sharpness": (adv[1] + (adv[2] - adv[1]) * (0.1 - 0.05) / 0.15) - adv[0],  # by hand: 0.1 in [0.05, 0.2]
            "corruption_error": np.mean(rob.values["error"][0, 1:]),  # model row, corrupted conditions
            "mce": np.mean(np.sum(rob.table(), 1) / np.sum(rob.table(model="baseline"), 1)),
            "ms_per_step": 1000 * sum(r["seconds"] for r in history) / sum(r["steps"] for r in history),
        }
        row = next(r for r in summary["rows"] if r["run"] == method)
        cells, group_cells = rows[method][3:], grouped[method][2:]
        assert len(cells) == len(expected) == 9
        for (key, value), cell, group_cell, digits in zip(
            expected.items(), cells, group_cells, (2, 4, 4, 3, 2, 4, 2, 3, 1)
        ):
            assert row[key] == pytest.approx(value, rel=1e-12), key
            assert cell == group_cell == f"{value:.{digits}f}", key  # a group of one seed: its value, no spread
        assert rows[method][1] == method and grouped[method][1] == "1" and rows[method][2] == "1"  # group, n, seed
        assert summary["sources"][method]["hessian"] == str(run / "hessian.h5")
    sev = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in md.split("**Robustness: test error")[1].splitlines()
        if line.startswith("| sam ")
    ][0]
    rob = read_robustness(analysed / "sam" / "robustness.h5")
    assert sev[1:] == [f"{v:.2f}" for v in (rob.clean(), *rob.by_severity(), rob.mean())]
    assert "Paired differences against erm" in md and "Per seed" in md
    for name in REPORT_FIGURES:
        assert f"![{name}]({name}.png)" in md and (out / f"{name}.png").stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert '<script src="http' not in page and page.count("Plotly.newPlot") == 8  # plotly.js inline once, 8 figures
    assert "<td>erm</td>" in page and f"<td>{rows['sam'][4]}</td>" in page and "<details><summary>Per seed" in page
    z = read_surface(analysed / "erm" / "surface_2d.h5").values["train_loss"]
    assert f"{z[1, 2]:.6f}"[:7] in page  # the surface data is in the page


def test_calibration_of_a_checkpoint_matches_its_training_metrics(analysed):
    metrics, rel = calibration(analysed / "erm" / "final.pt", EvalOptions(device="cpu"))
    last = read_checkpoint(analysed / "erm" / "final.pt")["metrics"][-1]
    assert metrics["error"] == pytest.approx(last["test_error"]) and metrics["ece"] == pytest.approx(
        last["test_ece"], abs=1e-6
    )
    assert rel["count"].sum() == 360  # the whole digits test split


def test_compare_handles_missing_files_and_bad_input(analysed, runs, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["compare", str(runs / "erm"), str(analysed / "sam"), "--out", str(out), "--no-calibration"]) == 0
    erm = next(r for r in json.loads((out / "summary.json").read_text())["rows"] if r["run"] == "erm")
    assert erm["lambda_max"] is None and erm["test_error"] is not None  # a run without analyses: its metrics only
    assert re.search(
        r"\| erm \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| — \| — \| — \| — \| — \| [\d.]+ \|",
        (out / "report.md").read_text(),
    )
    assert not (out / "calibration.png").exists()
    assert main(["compare", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["compare", str(analysed / "erm"), "--out", str(out), "--format", "gif"]) == 2
