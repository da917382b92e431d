"""Loss surfaces against evaluations by hand, exact resume after kill -9, 2 ranks = 1 rank, file layouts."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import cli
from torch.func import functional_call
from torch.optim.swa_utils import update_bn

from landscape._jobs import EvalOptions, interpolation_surface, random_surface, trajectory_surface
from landscape.data import load_dataset
from landscape.io import export_loss_landscape, read_directions, read_surface
from landscape.problem import Problem
from landscape.surfaces import Displacement, evaluate_point, parse_range
from landscape.trainers import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
OPTS = EvalOptions(splits=["train", "test"], samples=300, device="cpu", progress=False)


def inputs(meta, split, samples=None, seed=0):
    """The evaluation tensors rebuilt independently of landscape._evaluation."""
    ds = load_dataset(meta["dataset"]["name"])
    x, y = ds.split(split)
    if samples:
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:samples].sort().values
        x, y = x[idx], y[idx]
    mean = torch.tensor(meta["dataset"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["dataset"]["std"]).view(1, -1, 1, 1)
    return (x.float() / 255 - mean) / std, y


def by_hand(model, params, x, y):
    with torch.no_grad():
        logits = functional_call(model, params, (x,))
    return F.cross_entropy(logits, y).item(), 100.0 * (logits.argmax(1) == y).float().mean().item()


def test_points_equal_evaluations_by_hand(runs, tmp_path):
    ckpt = runs / "sam" / "final.pt"
    out = random_surface(ckpt, tmp_path / "s.h5", parse_range("-1:1:5"), parse_range("-0.5:0.5:3", "--y"), OPTS, seed=7)
    s = read_surface(out)
    assert s.complete and s.values["train_loss"].shape == (3, 5) and s.attrs["index_order"] == "yx"
    model, meta = load_checkpoint(ckpt)
    (names, d1), (_, d2) = read_directions(out)
    w0 = dict(model.named_parameters())
    assert names == list(w0)
    for split in ("train", "test"):
        x, y = inputs(meta, split, samples=300)
        center = by_hand(model, {}, x, y)
        assert s.values[f"{split}_loss"][1, 2] == pytest.approx(center[0], rel=1e-5)  # x=0, y=0
        assert s.values[f"{split}_acc"][1, 2] == pytest.approx(center[1])
        for i, j in [(0, 0), (2, 4), (0, 3)]:  # Z[i, j] is at (x[j], y[i])
            a, b = s.xcoordinates[j], s.ycoordinates[i]
            params = {
                n: w0[n].detach() + a * torch.from_numpy(d1[k]) + b * torch.from_numpy(d2[k])
                for k, n in enumerate(names)
            }
            loss, acc = by_hand(model, params, x, y)
            assert s.values[f"{split}_loss"][i, j] == pytest.approx(loss, rel=1e-4)
            assert s.values[f"{split}_acc"][i, j] == pytest.approx(acc)


def test_model_is_left_exactly_as_it_was(runs):
    model, _ = load_checkpoint(runs / "sam" / "final.pt")
    model.train()
    model[1].eval()  # mixed modes come back per module
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    problem = Problem(model, (torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))))
    with problem.session(), Displacement(model, [d]) as disp:
        disp.move((0.37,))
        evaluate_point(problem, ["train"], "recompute", "train")
        assert not torch.equal(model.state_dict()["0.weight"], before["0.weight"])
        assert not torch.equal(model.state_dict()["1.running_mean"], before["1.running_mean"])
    assert model.training and not model[1].training
    assert not model[0].weight.requires_grad and all(p.requires_grad for p in list(model.parameters())[1:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_recomputed_batchnorm_matches_torch_update_bn(runs, tmp_path):
    ckpt = runs / "erm" / "final.pt"
    opts = EvalOptions(splits=["test"], samples=200, bn="recompute", device="cpu", progress=False, batch_size=50)
    s = read_surface(random_surface(ckpt, tmp_path / "bn.h5", parse_range("-0.2:0.2:3"), None, opts))
    model, meta = load_checkpoint(ckpt)
    x_train, _ = inputs(meta, "train", samples=200)
    update_bn([xb for xb in x_train.split(50)], model)  # torch's own implementation
    model.eval()
    x, y = inputs(meta, "test", samples=200)
    assert s.values["test_loss"][1] == pytest.approx(by_hand(model, {}, x, y)[0], rel=1e-5)


def test_speed_paths_equal_the_plain_path(runs, tmp_path):
    ckpt, xs = runs / "erm" / "final.pt", parse_range("-1:1:4")
    plain = read_surface(random_surface(ckpt, tmp_path / "a.h5", xs, None, OPTS))
    small = read_surface(
        random_surface(ckpt, tmp_path / "b.h5", xs, None, EvalOptions(**{**OPTS.__dict__, "batch_size": 7}))
    )
    np.testing.assert_allclose(small.values["train_loss"], plain.values["train_loss"], rtol=1e-5)
    compiled = read_surface(
        random_surface(ckpt, tmp_path / "c.h5", xs, None, EvalOptions(**{**OPTS.__dict__, "compile": True}))
    )
    np.testing.assert_allclose(compiled.values["train_loss"], plain.values["train_loss"], rtol=1e-5)
    np.testing.assert_array_equal(compiled.values["train_acc"], plain.values["train_acc"])


def test_interpolation_hits_both_checkpoints(runs, tmp_path):
    a, b = runs / "erm" / "final.pt", runs / "sam" / "final.pt"
    s = read_surface(interpolation_surface(a, b, tmp_path / "i.h5", parse_range("0:1:3"), OPTS))
    for k, ckpt in ((0, a), (2, b)):
        model, meta = load_checkpoint(ckpt)
        x, y = inputs(meta, "test", samples=300)
        assert s.values["test_loss"][k] == pytest.approx(by_hand(model, {}, x, y)[0], rel=1e-4)


def test_trajectory_surface_stores_the_path(runs, tmp_path):
    s = read_surface(
        trajectory_surface(
            runs / "sam",
            tmp_path / "t.h5",
            None,
            None,
            EvalOptions(splits=["train"], samples=100, device="cpu", progress=False),
        )
    )
    assert s.values["train_loss"].shape == (21, 21) and s.complete
    px, py = s.extras["proj_xcoord"], s.extras["proj_ycoord"]
    assert len(px) == 3 and abs(px[-1]) < 1e-9 and abs(py[-1]) < 1e-9  # the final checkpoint is the origin
    assert s.xcoordinates.min() < px.min() and s.xcoordinates.max() > px.max()
    assert 0.5 < s.extras["explained_variance_ratio_"].sum() <= 1 + 1e-9


@pytest.mark.slow
def test_kill_9_mid_grid_then_resume_equals_uninterrupted(runs, tmp_path):
    args = [
        "surface",
        str(runs / "erm" / "final.pt"),
        "--x",
        "-1:1:16",
        "--y",
        "-1:1:16",
        "--samples",
        "200",
        "--split",
        "train,test",
    ]
    out, total = tmp_path / "killed.h5", 256
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape.apps.cli", *args, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen = b""
    while proc.poll() is None:  # read the progress bar until a few rounds are written, then kill
        seen += proc.stderr.read(1)
        counts = [int(n) for n in re.findall(rb"(\d+)/256", seen[-200:])]
        if counts and counts[-1] >= 24:
            break
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    proc.stderr.close()
    partial = read_surface(out)  # a killed file is readable
    done = int(partial.computed.sum())
    assert 24 <= done < total, done
    resumed = cli(*args, "--no-progress", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {done} of {total} points already computed" in resumed.stdout
    straight = cli(*args, "--no-progress", "--out", str(tmp_path / "straight.h5"))
    assert straight.returncode == 0, straight.stderr
    a, b = read_surface(out), read_surface(tmp_path / "straight.h5")
    for name in a.values:
        np.testing.assert_array_equal(a.values[name], b.values[name])
    np.testing.assert_array_equal(
        partial.values["train_loss"][partial.computed], a.values["train_loss"][partial.computed]
    )


@pytest.mark.slow
def test_two_ranks_equal_one(runs, tmp_path):
    args = [
        "surface",
        str(runs / "sam" / "final.pt"),
        "--x",
        "-1:1:5",
        "--y",
        "-1:1:3",
        "--samples",
        "200",
        "--no-progress",
    ]
    one = cli(*args, "--out", str(tmp_path / "one.h5"), env={"OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "landscape.apps.cli",
            *args,
            "--out",
            str(tmp_path / "two.h5"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = read_surface(tmp_path / "one.h5"), read_surface(tmp_path / "two.h5")
    assert b.complete
    np.testing.assert_array_equal(a.values["train_loss"], b.values["train_loss"])


def write_their_file(path, xs, ys, f):
    """A surface file exactly as loss-landscape's plot_surface.py writes it: (nx, ny) arrays filled y-major."""
    with h5py.File(path, "w") as h:
        h["dir_file"] = "dirs.h5"
        h["xcoordinates"], h["ycoordinates"] = xs, ys
        flat = np.full(len(xs) * len(ys), -1.0)
        for k, (x, y) in enumerate(zip(*[a.ravel() for a in np.meshgrid(xs, ys)])):  # their enumeration order
            if k != 4:  # one point left uncomputed
                flat[k] = f(x, y)
        h["train_loss"] = flat.reshape(len(xs), len(ys))
        h["train_acc"] = 100 - flat.reshape(len(xs), len(ys))


def test_reads_and_writes_loss_landscape_layout(tmp_path):
    xs, ys = np.linspace(-1, 1, 3), np.linspace(0, 1, 2)  # non-square: the trap
    f = lambda x, y: 10 + x + 100 * y  # noqa: E731
    write_their_file(tmp_path / "theirs.h5", xs, ys, f)
    s = read_surface(tmp_path / "theirs.h5")
    assert s.layout == "loss-landscape" and s.values["train_loss"].shape == (2, 3)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            if (i, j) != (1, 1):
                assert s.values["train_loss"][i, j] == f(x, y)
    assert not s.computed[1, 1] and np.isnan(s.values["train_loss"][1, 1])
    export_loss_landscape(s, [], tmp_path / "again.h5")
    with h5py.File(tmp_path / "again.h5") as a, h5py.File(tmp_path / "theirs.h5") as b:
        np.testing.assert_array_equal(a["train_loss"][:], b["train_loss"][:])


def test_cli_loss_landscape_format(runs, tmp_path):
    out = tmp_path / "ll.h5"
    r = cli(
        "surface",
        str(runs / "erm" / "final.pt"),
        "--x",
        "-1:1:3",
        "--y",
        "-1:1:2",
        "--samples",
        "50",
        "--no-progress",
        "--format",
        "loss-landscape",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as h:
        assert h["train_loss"].shape == (3, 2) and "xdirection" in h and "0" in h["ydirection"]
    assert not (tmp_path / "ll.h5.partial.h5").exists()
    s = read_surface(out)
    assert s.layout == "loss-landscape" and s.complete


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--x", "-1:1"], "--x '-1:1': expected MIN:MAX:NUM"),
        (["--x", "1:-1:5"], "need MIN < MAX"),
        (["--dim", "2"], "--dim 2 needs --y"),
        (["--split", "val"], "--split must name train and/or test"),
        (["--samples", "0"], "argument --samples: must be >= 1, got 0"),
    ],
)
def test_surface_bad_input(runs, tmp_path, capsys, argv, message):
    from landscape.apps.cli.__main__ import main

    assert (
        main(["surface", str(runs / "erm" / "final.pt"), "--out", str(tmp_path / "x.h5"), "--no-progress", *argv]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_surface_file_errors(runs, tmp_path, capsys):
    from landscape.apps.cli.__main__ import main

    base = ["surface", str(runs / "erm" / "final.pt"), "--x", "-1:1:3", "--samples", "20", "--no-progress"]
    assert main([*base[:1], str(tmp_path / "nope.pt"), *base[2:], "--out", str(tmp_path / "a.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.h5")]) == 0
    assert main([*base, "--out", str(tmp_path / "a.h5")]) == 2
    assert "exists: pass --resume to finish it or --overwrite" in capsys.readouterr().err
    assert main([*base, "--seed", "5", "--out", str(tmp_path / "a.h5"), "--resume"]) == 2
    assert "made with --seed 0 (now 5)" in capsys.readouterr().err
    assert (
        main(["interpolate", str(runs / "erm" / "final.pt"), str(tmp_path / "a.h5"), "--out", str(tmp_path / "b.h5")])
        == 2
    )
    assert "not a readable" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.h5"), "--overwrite"]) == 0


def test_diverged_points_differ_from_missing_ones(tmp_path):
    from landscape.io.surface import create_surface

    d = {"w": torch.ones(2, 2)}
    w = create_surface(tmp_path / "s.h5", np.linspace(-1, 1, 3), None, ["train"], [d], {"seed": 0})
    w.write([(0, {"train_loss": float("inf"), "train_acc": 10.0}), (1, {"train_loss": float("nan"), "train_acc": 0.0})])
    w.close()
    s = read_surface(tmp_path / "s.h5")
    assert s.computed.tolist() == [True, True, False]
    assert (
        np.isinf(s.values["train_loss"][0])
        and np.isnan(s.values["train_loss"][1])
        and np.isnan(s.values["train_loss"][2])
    )
    ((names, arrays),) = read_directions(tmp_path / "s.h5")
    assert names == ["w"] and np.array_equal(arrays[0], np.ones((2, 2)))


def test_reads_loss_landscape_direction_groups(tmp_path):
    with h5py.File(tmp_path / "dirs.h5", "w") as h:
        for axis in ("xdirection", "ydirection"):
            g = h.create_group(axis)
            for i in range(3):
                g[str(i)] = np.full((i + 1,), float(i))
    dirs = read_directions(tmp_path / "dirs.h5")
    assert (
        len(dirs) == 2
        and dirs[0][0] is None
        and [a.tolist() for a in dirs[1][1]] == [[0.0], [1.0, 1.0], [2.0, 2.0, 2.0]]
    )


def test_mismatched_checkpoints_are_refused(runs, tmp_path, capsys):
    from landscape.apps.cli.__main__ import main
    from landscape.trainers.train import TrainConfig, train

    train(TrainConfig(model="mlp", epochs=1), tmp_path / "mlp", progress=False, log=lambda line: None)
    assert (
        main(
            [
                "interpolate",
                str(runs / "erm" / "final.pt"),
                str(tmp_path / "mlp" / "final.pt"),
                "--samples",
                "20",
                "--no-progress",
                "--out",
                str(tmp_path / "i.h5"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "not the same architecture" in err and len(err.splitlines()) == 1
    base = ["--x", "-1:1:3", "--samples", "20", "--no-progress", "--out", str(tmp_path / "s.h5")]
    assert main(["surface", str(runs / "erm" / "final.pt"), *base]) == 0
    assert main(["surface", str(runs / "sam" / "final.pt"), *base, "--resume"]) == 2  # another checkpoint
    assert "made with another checkpoint (its contents differ)" in capsys.readouterr().err


def test_direction_seeds_store_the_mean_and_std_of_separate_surfaces_and_the_basin_width(runs, tmp_path):
    """K pairs of random directions: each point's mean and std over them equal those of K surfaces computed one by
    one with seeds SEED..SEED+K-1; the file keeps each seed's surface, resumes, and the CLI writes the same."""
    import landscape
    from landscape.surfaces import basin_widths

    problem = Problem.from_checkpoint(runs / "erm" / "final.pt", samples=120, device="cpu")
    one_by_one = [landscape.surface(problem, "-1:1:5", "-1:1:4", seed=3 + k, progress=False) for k in range(3)]
    out = tmp_path / "seeds.h5"
    s = landscape.surface(problem, "-1:1:5", "-1:1:4", seed=3, direction_seeds=3, out=out, progress=False)
    stack = np.stack([o.values["train_loss"] for o in one_by_one])
    np.testing.assert_allclose(s.values["train_loss"], stack.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.spread["train_loss"], stack.std(0), rtol=1e-12)
    back = read_surface(out)
    np.testing.assert_allclose(back.spread["train_acc"], np.stack([o.values["train_acc"] for o in one_by_one]).std(0))
    widths = [basin_widths(o, 0.5)["train"] for o in one_by_one]
    assert back.attrs["basin_width_train"] == pytest.approx(np.mean(widths))
    assert back.attrs["basin_width_std_train"] == pytest.approx(np.std(widths))
    assert sorted(p.name for p in (tmp_path / ".seeds.seeds").iterdir()) == ["seed3.h5", "seed4.h5", "seed5.h5"]
    with pytest.raises(ValueError, match="exists"):
        landscape.surface(problem, "-1:1:5", "-1:1:4", seed=3, direction_seeds=3, out=out, progress=False)
    again = landscape.surface(problem, "-1:1:5", "-1:1:4", seed=3, direction_seeds=3, out=out, resume=True)
    np.testing.assert_array_equal(again.values["train_loss"], s.values["train_loss"])
    r = cli(
        "surface", str(runs / "erm" / "final.pt"), "--samples", "120", "--x", "-1:1:5", "--seed", "3",
        "--direction-seeds", "3", "--out", str(tmp_path / "cli.h5"), "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(read_surface(tmp_path / "cli.h5").spread["train_loss"].shape, (5,))


def test_basin_width_on_analytic_bowls():
    """Within ``rise`` of the centre: |x| <= sqrt(rise) on x^2 (width 2 sqrt(rise)), the disc of radius sqrt(rise)
    on x^2 + y^2 (diameter 2 sqrt(rise) from its area), to the grid's resolution; a second bowl not connected to
    the centre is not counted."""
    from landscape.surfaces import basin_width

    xs = np.linspace(-2, 2, 401)
    assert basin_width(xs, None, xs**2, 0.49) == pytest.approx(1.4, abs=0.011)
    two = np.minimum(xs**2, (xs - 1.8) ** 2 + 0.1)  # another minimum at 1.8, within the rise but cut off from 0
    assert basin_width(xs, None, two, 0.3) == pytest.approx(2 * np.sqrt(0.3), abs=0.02)
    ys = np.linspace(-1.5, 1.5, 301)
    bowl = xs[None, :] ** 2 + ys[:, None] ** 2
    assert basin_width(xs, ys, bowl, 0.64) == pytest.approx(1.6, rel=0.01)
    assert np.isnan(basin_width(xs, None, np.full_like(xs, np.nan), 0.5))


def test_refinement_reproduces_an_analytic_surface_with_fewer_evaluations():
    """Exact where it evaluates; within the tolerance elsewhere (a quadratic's bilinear error peaks at the probes);
    a smooth bowl needs several times fewer points than the grid; a kink is evaluated point by point."""
    from landscape._refine import refine

    n = 65
    xs = np.linspace(-1, 1, n)
    bowl = 0.3 * xs[None, :] ** 2 + 0.2 * xs[:, None] ** 2 + 0.1 * xs[None, :] * xs[:, None]
    calls = []

    def evaluate(points):
        calls.extend(points)
        return [{"loss": bowl[p], "twice": 2 * bowl[p]} for p in points]

    values, done = refine(n, n, evaluate, "loss", 1e-2)
    assert len(calls) == len(set(calls)) == done.sum()  # no point evaluated twice
    np.testing.assert_array_equal(values["loss"][done], bowl[done])
    assert np.abs(values["loss"] - bowl).max() <= 1e-2
    np.testing.assert_allclose(values["twice"], 2 * values["loss"])  # every value interpolated in the same cells
    assert n * n / done.sum() > 3
    # a kink (|x|) on a 1-D slice: its cell is refined down to single steps, the straight parts are not
    line = np.abs(xs - 0.3)
    v1, d1 = refine(n, 1, lambda pts: [{"loss": line[j]} for _, j in pts], "loss", 1e-9)
    np.testing.assert_allclose(v1["loss"][0], line, atol=1e-12)
    assert d1.sum() < n / 2 and d1[0, np.argmin(line)]


def test_a_refined_surface_is_the_full_grid_where_it_evaluates(runs, tmp_path):
    import landscape

    problem = Problem.from_checkpoint(runs / "erm" / "final.pt", samples=120, device="cpu")
    full = landscape.surface(problem, "-1:1:17", "-1:1:17", progress=False)
    out = tmp_path / "refined.h5"
    r = landscape.surface(problem, "-1:1:17", "-1:1:17", refine=0.05, out=out, progress=False)
    back = read_surface(out)
    done = back.extras["evaluated"].astype(bool)
    assert back.complete and back.attrs["evaluations"] == done.sum() < 17 * 17
    for name in ("train_loss", "train_acc"):
        np.testing.assert_allclose(back.values[name][done], full.values[name][done], rtol=1e-10)
    # log10 of the loss within about the tolerance elsewhere (the test probes a cell's centre and edge middles)
    assert np.abs(np.log10(r.values["train_loss"]) - np.log10(full.values["train_loss"])).max() < 0.1
    with pytest.raises(ValueError, match="not resumable"):
        landscape.surface(problem, "-1:1:17", "-1:1:17", refine=0.05, out=out, progress=False)


def test_bootstrap_blocks_give_the_whole_split_and_its_standard_error(runs, tmp_path):
    """Each point's value is the whole split's; each block's surface is that of a problem on the block alone; the
    bootstrap standard error is the plug-in one of a mean of K equal blocks, std(block values) / sqrt(K)."""
    import landscape

    problem = Problem.from_checkpoint(runs / "erm" / "final.pt", samples=200, device="cpu")
    full = landscape.surface(problem, "-1:1:7", progress=False)
    b = landscape.surface(problem, "-1:1:7", bootstrap=8, out=tmp_path / "b.h5", progress=False)
    np.testing.assert_allclose(b.values["train_loss"], full.values["train_loss"], rtol=1e-6)
    x, y = problem.splits["train"].tensors.x, problem.splits["train"].tensors.y
    blocks = [
        landscape.surface(Problem(problem.model, (x[i : i + 25], y[i : i + 25])), "-1:1:7", progress=False)
        for i in range(0, 200, 25)
    ]
    per_block = np.stack([s.values["train_loss"] for s in blocks])
    np.testing.assert_allclose(per_block.mean(0), full.values["train_loss"], rtol=1e-6)
    plug_in = per_block.std(0) / np.sqrt(8)
    np.testing.assert_allclose(b.spread["train_loss"], plug_in, rtol=0.1)
    back = read_surface(tmp_path / "b.h5")
    assert back.attrs["bootstrap"] == 8 and np.allclose(back.spread["train_acc"], b.spread["train_acc"])
    with pytest.raises(ValueError, match="choose one"):
        landscape.surface(problem, "-1:1:7", bootstrap=8, refine=0.1)
