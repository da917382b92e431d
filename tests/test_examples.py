"""The examples/ scripts run as a user would run them (small settings) and write what they promise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from landscape.apps.explorer.catalog import Catalog
from landscape.apps.explorer.views import chosen_groups, compare_figures
from landscape.io import file_category, read_surface
from landscape.report import summary_row
from landscape.runs import find_runs

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args):
    r = subprocess.run(
        [sys.executable, f"examples/{name}.py", "--quick", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_custom_cnn_trains_analyses_and_compares(tmp_path):
    out = run_example("custom_cnn", "--out", str(tmp_path))
    assert "| sgd |" in out and "| sam |" in out
    for method in ("sgd", "sam"):
        run = tmp_path / method
        kinds = {f.name: file_category(f) for f in run.glob("*.h5")}
        assert kinds == {
            "surface_2d.h5": "surface_2d",
            "hessian.h5": "hessian",
            "sweep.h5": "sweep",
            "trajectory.h5": "surface_2d",
        }
        assert len(list((run / "snapshots").glob("step_*.pt"))) == 3
        assert read_surface(run / "trajectory.h5").attrs["snapshots"] == 3
    runs = find_runs([tmp_path / "sgd", tmp_path / "sam"])
    rows = [summary_row(r, 0.5) for r in runs]
    assert [r["method"] for r in rows] == ["sgd", "sam"]  # the problems' labels
    assert all(r["test_error"] is not None and r["lambda_max"] is not None and r["sharpness"] is not None for r in rows)
    snapshot = Catalog(tmp_path).scan()  # the explorer lists the user's runs under their labels and draws them
    assert sorted((r["run"], r["method"]) for r in snapshot["runs"]) == [("sam", "sam"), ("sgd", "sgd")]
    figs = compare_figures(chosen_groups(Catalog(tmp_path), ["sgd", "sam"]), log=True)
    assert len(figs["surfaces"].data) == 2 and len(figs["spectra"].data) >= 2
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {r["run"]: r["lambda_max"] for r in summary["rows"]} == {r["run"]: r["lambda_max"] for r in rows}


def test_regression_example_prints_spectra(tmp_path):
    out = run_example("regression_mlp", "--out", str(tmp_path))
    assert "Hessian top-5:" in out and "Gauss-Newton top-5:" in out and "SAM sharpness at rho 0.1" in out
    assert {f.name for f in tmp_path.glob("*.h5")} == {"hessian.h5", "surface_1d.h5", "sweep.h5"}


def test_tiny_transformer_example_refuses_train_mode_and_analyses_a_block(tmp_path):
    out = run_example("tiny_transformer", "--out", str(tmp_path))
    assert "train mode is refused: model: the same data['train'] gave the loss" in out
    assert "attention block only (1088 parameters)" in out
    assert read_surface(tmp_path / "surface_2d.h5").complete


def test_gradient_descent_reaches_the_edge_of_stability_and_hovers_there(tmp_path):
    """Cohen et al. 2021 on a tanh MLP with MSE, η = 0.2: the tracked top eigenvalue starts below 2/η, rises to it
    (progressive sharpening), then hovers: its median from there within 10 % of 2/η, never above 1.25 x 2/η."""
    out = run_example("edge_of_stability", "--steps", "1200", "--out", str(tmp_path))
    summary = json.loads(out.splitlines()[0])
    limit = summary["threshold"]
    assert limit == pytest.approx(10.0)
    assert summary["first"] < limit and summary["reached_at_step"] is not None
    assert abs(summary["median_after"] - limit) < 0.1 * limit and summary["max"] < 1.25 * limit
    rows = [json.loads(line) for line in (tmp_path / "curvature.jsonl").read_text().splitlines()]
    assert len(rows) == 25 and rows[-1]["step"] == 1200
    assert (tmp_path / "edge_of_stability.png").stat().st_size > 20_000


def test_sharpness_generalization_example_trains_a_grid_and_ranks_the_measures(tmp_path):
    out = run_example("sharpness_generalization", "--out", str(tmp_path))
    assert "| measure | n | Kendall τ with gap [95 % interval] | granulated τ | ψ lr | ψ method |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| sam@0.1 | 4 |", "| apgd@0.1 | 4 |"))]
    assert len(rows) == 2
    runs = find_runs(sorted(tmp_path.glob("*/seed0")))
    assert len(runs) == 4 and all(set(r.sharpness) == {"sam@0.1", "apgd@0.1", "fisher_rao"} for r in runs)
    # Auto-PGD finds at least what the 10-step ascent finds, on every run
    assert all(r.sharpness["apgd@0.1"] >= r.sharpness["sam@0.1"] - 1e-9 for r in runs)
