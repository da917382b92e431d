"""Kendall's τ against scipy, the granulated τ against Jiang et al.'s definition by hand, bootstrap coverage, and
correlate over run folders."""

import json

import numpy as np
import pytest
from scipy.stats import kendalltau

import landscape
from landscape.correlation import bootstrap_interval, granulated_tau, kendall_tau


def test_kendall_tau_b_equals_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for n, digits in [(10, 3), (25, 0), (40, 1)]:
        x = np.round(rng.normal(size=n), digits)
        y = np.round(x + rng.normal(size=n), digits)
        assert kendall_tau(x, y)[0] == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    rows = rng.normal(size=(7, 12))
    assert kendall_tau(rows, -rows) == pytest.approx(-np.ones(7))
    assert np.isnan(kendall_tau(np.ones(5), np.arange(5.0))[0])


def test_granulated_tau_is_the_mean_over_axes_of_the_mean_tau_within_groups():
    # lr in {1, 2, 3} x width in {8, 16}: within each width the measure ranks lr like the gap (tau +1); within each lr
    # it ranks the two widths against the gap (tau -1)
    settings, measure, gap = [], [], []
    for width in (8, 16):
        for lr in (1, 2, 3):
            settings.append({"lr": lr, "width": width, "seed": 0})
            measure.append(lr + (10 if width == 8 else 0))
            gap.append(lr + (0 if width == 8 else 10))
    psi_mean, psi = granulated_tau(np.array(measure, float), np.array(gap, float), settings, ["lr", "width"])
    assert psi == {"lr": 1.0, "width": -1.0} and psi_mean == 0.0
    # the plain tau over all six runs is what scipy says (here far from either axis')
    assert kendall_tau(np.array(measure, float), np.array(gap, float))[0] == pytest.approx(
        kendalltau(measure, gap).statistic
    )
    # a second seed makes groups of its own (runs that differ in the seed differ in more than the axis)
    psi_mean2, psi2 = granulated_tau(
        np.array(measure * 2, float),
        np.array(gap * 2, float),
        settings + [{**s, "seed": 1} for s in settings],
        ["lr", "width"],
    )
    assert psi2 == psi


def test_bootstrap_intervals_cover_the_true_tau_at_about_the_nominal_rate():
    r = 0.6
    truth = 2 / np.pi * np.arcsin(r)  # Kendall's tau of a bivariate normal
    rng = np.random.default_rng(1)
    covered = 0
    reps = 200
    for k in range(reps):
        xy = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=40)
        lo, hi = bootstrap_interval(xy[:, 0], xy[:, 1], resamples=500, level=0.9, seed=k)
        covered += lo <= truth <= hi
    assert 0.82 <= covered / reps <= 0.97


def test_correlate_reads_run_folders_and_rows(tmp_path):
    rows = []
    for i, (lr, seed) in enumerate([(0.1, 0), (0.1, 1), (0.3, 0), (0.3, 1), (1.0, 0), (1.0, 1)]):
        run = tmp_path / f"r{i}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"method": "sam", "lr": lr, "seed": seed, "device": "cpu"}))
        gap = 10 * lr + seed
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_acc": 100.0, "test_error": gap}) + "\n")
        (run / "sharpness.json").write_text(
            json.dumps({"measures": {"apgd@0.1": {"value": lr}, "fisher_rao": {"value": -gap}}})
        )
        rows.append({"lr": lr, "seed": seed, "gap": gap, "apgd@0.1": lr, "fisher_rao": -gap})
    found = landscape.correlate(sorted(tmp_path.iterdir()), resamples=200)
    assert [c.measure for c in found] == ["apgd@0.1", "fisher_rao"]
    apgd, fr = found
    assert apgd.tau == pytest.approx(kendalltau([r["apgd@0.1"] for r in rows], [r["gap"] for r in rows]).statistic)
    assert fr.tau == pytest.approx(-1.0) and fr.psi == {"lr": -1.0} and apgd.psi == {"lr": 1.0}
    assert apgd.low <= apgd.tau <= apgd.high
    from_rows = landscape.correlate(rows, ["apgd@0.1"], axes=["lr"], resamples=200)
    assert from_rows[0].tau == apgd.tau and from_rows[0].granulated == apgd.granulated
    with pytest.raises(ValueError, match="target"):
        landscape.correlate(rows, target="loss")
    with pytest.raises(ValueError, match="no run has the measure"):
        landscape.correlate(rows, ["nothing"])


def test_compare_ranks_the_measures_and_draws_a_scatter_per_measure(tmp_path):
    from landscape.plots import mpl
    from landscape.plots.checks import text_defects
    from landscape.report import correlation_section
    from landscape.runs import find_runs

    for method in ("erm", "sam"):
        for lr in (0.05, 0.2):
            for seed in (0, 1):
                run = tmp_path / "runs" / f"{method}_lr{lr}" / f"seed{seed}"
                run.mkdir(parents=True)
                (run / "config.json").write_text(json.dumps({"method": method, "lr": lr, "seed": seed}))
                gap = lr * 10 + (method == "sam") + seed / 10
                (run / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "train_acc": 99.0, "test_error": 1 + gap}))
                (run / "sharpness.json").write_text(json.dumps({"measures": {"apgd@0.1": {"value": gap**2}}}))
    runs = sorted((tmp_path / "runs").glob("*/*"))
    out = landscape.compare(runs, tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "| apgd@0.1 | 8 | +1.00 [+1.00, +1.00] | +1.00 | +1.00 | +1.00 |" in md  # ψ lr, ψ method
    assert (out / "correlation.png").is_file() and "correlation.png" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["correlation"][0]["measure"] == "apgd@0.1" and summary["correlation"][0]["tau"] == 1.0
    found, points, taus = correlation_section(find_runs(runs), 0.1)
    assert text_defects(mpl.correlation_scatter(points, taus)) == []
    # runs that differ only by their seed: no axis, no table
    assert correlation_section(find_runs(runs[:2]), 0.1) == ([], {}, {})


def test_a_malformed_sharpness_file_is_left_out_with_its_reason(tmp_path):
    """sharpness.json is a user's file: one that is not ours is named in the run's problems, the run still reads."""
    from landscape.runs import find_run

    for i, text in enumerate(['{"measures": {"apgd@0.1": {"value": "high"}}}', "[1, 2]", "\x00\xff not json"]):
        run = tmp_path / f"r{i}"
        run.mkdir()
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_error": 1.0}) + "\n")
        (run / "sharpness.json").write_text(text, errors="surrogateescape")
        found = find_run(run)
        assert found.sharpness == {} and found.metrics["test_error"] == 1.0
        assert len(found.problems) == 1 and "sharpness.json" in found.problems[0][1]
