"""Seeds as groups: mean ± std and paired 95 % intervals against hand computations, the grouping rule, and the
grouped report of runs trained with ``--seeds``."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from landscape.apps.cli.__main__ import main
from landscape.groups import describe, group_runs, interval95, mean_sweep, paired
from landscape.io import Sweep
from landscape.runs import Run, find_runs

T975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student-t 0.975 quantiles for 2 and 3 degrees of freedom


def hand_std(values):
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def test_describe_and_interval_match_a_hand_computation():
    d = describe([1.0, 2.0, None, 4.0, float("nan")])
    assert d["mean"] == pytest.approx(7 / 3) and d["n"] == 3
    assert d["std"] == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert d["values"] == [1.0, 2.0, None, 4.0, None]
    assert describe([5.0])["std"] is None and describe([])["mean"] is None
    diffs = [0.5, -0.1, 0.3, 0.2]
    half = T975[3] * hand_std(diffs) / 2  # sqrt(4) = 2
    lo, hi = interval95(diffs)
    assert lo == pytest.approx(0.225 - half) and hi == pytest.approx(0.225 + half)
    assert interval95([1.0]) is None


def run(name, seed, **config):
    return Run(
        name, Path(name), {"method": "sam", "model": "small_cnn", "lr": 0.1, "seed": seed, **config}, {}, None, None
    )


def test_runs_group_by_everything_but_the_seed():
    runs = [
        run("a", 1),
        run("b", 0, device="cuda", save_every=5, hparams={"rho": 0.05}),
        run("c", 2, hparams={"rho": 0.2}),
        run("d", 0, hparams={"rho": 0.2}),
        run("e", 0, lr=0.05),
        run("f", 0, method="erm"),
    ]
    groups = group_runs(runs)
    assert [[r.name for r in g.runs] for g in groups] == [["b", "a"], ["d", "c"], ["e"], ["f"]]  # seeds in order
    assert [g.seeds for g in groups] == [[0, 1], [0, 2], [0], [0]]
    names = [g.name for g in groups]  # same method: told apart by what differs
    assert names[3] == "erm" and names[0] != names[1] != names[2] and all(n.startswith("sam (") for n in names[:3])
    assert names[1] == "sam (lr=0.1, rho=0.2)" and names[2] == "sam (lr=0.05, rho=0.05)"


def test_paired_differences_match_seeds_not_positions():
    base = group_runs([run(f"b{s}", s, method="erm") for s in (0, 1, 2)])[0]
    group = group_runs([run(f"g{s}", s) for s in (2, 0, 1, 3)])[0]  # seed 3 has no partner
    rows = {
        "b0": {"x": 1.0},
        "b1": {"x": 2.0},
        "b2": {"x": 4.0},
        "g0": {"x": 1.5},
        "g1": {"x": 1.0},
        "g2": {"x": 5.0},
        "g3": {"x": 9.0},
    }
    p = paired(group, base, rows, "x")
    assert sorted(p["diffs"]) == sorted([0.5, -1.0, 1.0]) and p["n"] == 3
    half = T975[2] * hand_std([0.5, -1.0, 1.0]) / math.sqrt(3)
    assert p["mean"] == pytest.approx(1 / 6) and p["ci95"] == pytest.approx((1 / 6 - half, 1 / 6 + half))


def test_mean_sweep_is_the_mean_over_seeds_with_their_std():
    radii = np.array([0.0, 0.5])

    def sweep(base, v):
        return Sweep(
            "s.h5",
            radii,
            ["random"],
            {"loss_mean": np.array([[base, v]]), "acc_mean": np.array([[90.0, 80.0]])},
            np.ones((1, 2), bool),
            {},
        )

    m = mean_sweep([sweep(1.0, 2.0), sweep(1.0, 3.0), sweep(1.0, 7.0)])
    assert m.values["loss_mean"][0, 1] == pytest.approx(4.0) and m.values["loss_std"][0, 1] == pytest.approx(
        hand_std([2, 3, 7])
    )
    assert m.values["loss_std"][0, 0] == 0 and m.attrs["seeds"] == 3
    # seeds at different losses that rise alike: the increase the figures draw has no spread
    shifted = mean_sweep([sweep(1.0, 2.0), sweep(2.0, 3.0), sweep(4.0, 5.0)])
    assert shifted.values["loss_mean"][0, 0] == pytest.approx(7 / 3) and shifted.values["loss_std"][0, 1] == 0
    assert shifted.values["acc_std"][0, 1] == 0  # accuracy: the std of the values themselves


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """ERM and SAM on 3 seeds each (1 epoch), and one SAM run with another rho: three groups."""
    root = tmp_path_factory.mktemp("seeded")
    for method in ("erm", "sam"):
        assert (
            main(
                [
                    "train",
                    "--method",
                    method,
                    "--epochs",
                    "1",
                    "--seeds",
                    "0-2",
                    "--out",
                    str(root / method),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "train",
                "--method",
                "sam",
                "--rho",
                "0.2",
                "--epochs",
                "1",
                "--seed",
                "0",
                "--out",
                str(root / "sam-rho0.2"),
                "--no-progress",
            ]
        )
        == 0
    )
    return root


def test_train_seeds_writes_one_run_per_seed(seeded):
    for seed in range(3):
        cfg = json.loads((seeded / "sam" / f"seed{seed}" / "config.json").read_text())
        assert cfg["seed"] == seed and cfg["method"] == "sam"
    errors = [
        json.loads((seeded / "sam" / f"seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])["test_error"]
        for s in range(3)
    ]
    assert len(set(errors)) > 1  # the seeds differ


def test_grouped_report_cells_are_hand_means_and_paired_intervals(seeded, tmp_path):
    dirs = [seeded / m / f"seed{s}" for m in ("erm", "sam") for s in range(3)] + [seeded / "sam-rho0.2"]
    assert main(["compare", *map(str, dirs), "--out", str(tmp_path), "--no-calibration", "--baseline", "erm"]) == 0

    def errors(method):
        return [
            json.loads((seeded / method / f"seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])["test_error"]
            for s in range(3)
        ]

    erm, sam = errors("erm"), errors("sam")
    md = (tmp_path / "report.md").read_text()
    lines: dict = {}
    for line in md.split("**Mean ± std over seeds**")[1].split("**Paired")[0].splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells:
            lines[cells[0]] = cells
    assert lines["erm"][1] == "3" and lines["erm"][2] == f"{np.mean(erm):.2f} ± {hand_std(erm):.2f}"
    assert (
        lines["sam (rho=0.05)"][1] == "3" and lines["sam (rho=0.05)"][2] == f"{np.mean(sam):.2f} ± {hand_std(sam):.2f}"
    )
    assert lines["sam (rho=0.2)"][1] == "1"  # the other rho is its own group, not a fourth seed of sam
    diffs = [s - e for s, e in zip(sam, erm)]
    half = T975[2] * hand_std(diffs) / math.sqrt(3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    p = next(p for p in summary["paired"] if p["group"] == "sam (rho=0.05)")
    assert summary["baseline"] == "erm" and p["test_error"]["n"] == 3
    assert p["test_error"]["ci95"] == pytest.approx([np.mean(diffs) - half, np.mean(diffs) + half])
    assert f"{np.mean(diffs):+.2f} [{np.mean(diffs) - half:+.2f}, {np.mean(diffs) + half:+.2f}] (n=3)" in md
    assert {r["run"]: r["group"] for r in summary["rows"]}["sam/seed1"] == "sam (rho=0.05)"  # per-seed rows named
    assert (
        main(
            ["compare", *map(str, dirs[:3]), "--out", str(tmp_path / "x"), "--no-calibration", "--baseline", "dropout"]
        )
        == 2
    )  # an unknown baseline is a one-line error


def test_runs_from_several_methods_with_the_same_folder_names(seeded):
    runs = find_runs([seeded / "erm" / "seed0", seeded / "sam" / "seed0"])
    assert [r.name for r in runs] == ["erm/seed0", "sam/seed0"]
