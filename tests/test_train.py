"""The training loop end to end: accuracy, checkpoints, exact resume (also after kill -9), bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPORT_FIGURES, cli

from landscape.data import TensorLoader, load_dataset
from landscape.trainers import METHODS, evaluate, load_checkpoint, read_checkpoint
from landscape.trainers.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(progress=False, log=lambda line: None)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_learns_digits(tmp_path, method):
    """8 epochs of small_cnn on digits (seconds on CPU) reach <= 5% test error (chance: 90%)."""
    last = train(TrainConfig(method=method, epochs=8), tmp_path, **QUIET)
    assert last["test_error"] <= 5.0, last


def test_run_directory_and_checkpoint_contents(tmp_path):
    cfg = TrainConfig(method="sam", epochs=3, save_every=2, hparams={"rho": 0.1})
    train(cfg, tmp_path, **QUIET)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_002.pt", "epoch_003.pt"]
    assert json.loads((tmp_path / "config.json").read_text())["hparams"] == {"rho": 0.1}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) >= {"train_loss", "train_acc", "test_error", "test_nll", "test_ece", "seconds"}
    model, meta = load_checkpoint(tmp_path / "final.pt")
    assert meta["method"] == {"name": "sam", "hparams": {"rho": 0.1}}
    assert meta["model"]["name"] == "small_cnn" and meta["dataset"]["name"] == "digits" and meta["epoch"] == 3
    assert not model.training
    # the rebuilt model reproduces the test metrics recorded during training
    ds = load_dataset("digits")
    loader = TensorLoader(
        ds.test_x, ds.test_y, mean=meta["dataset"]["mean"], std=meta["dataset"]["std"], batch_size=1000
    )
    again = evaluate(model, loader)
    assert again["error"] == pytest.approx(rows[-1]["test_error"]) and again["nll"] == pytest.approx(
        rows[-1]["test_nll"], rel=1e-5
    )


class Crash(Exception):
    pass


def crash_after(method: str, epochs: int):
    """A log callback that crashes the run once epoch ``epochs`` is checkpointed and reported."""

    def log(line: str) -> None:
        if line.startswith(f"{method} epoch {epochs}/"):
            raise Crash

    return log


@pytest.mark.parametrize("method", ["damp", "sam"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, method):
    averages = {"swa_start": 2, "ema": 0.9} if method == "sam" else {}  # their state resumes too
    cfg = TrainConfig(
        method=method, epochs=4, hparams={"num_splits": 2} if method == "damp" else {}, crop_padding=1, **averages
    )
    train(cfg, tmp_path / "straight", **QUIET)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "broken", progress=False, log=crash_after(method, 2))
    assert not (tmp_path / "broken" / "final.pt").exists()
    train(cfg, tmp_path / "broken", resume=True, **QUIET)
    a = read_checkpoint(tmp_path / "straight" / "final.pt")
    b = read_checkpoint(tmp_path / "broken" / "final.pt")
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert [r["test_nll"] for r in a["metrics"]] == [r["test_nll"] for r in b["metrics"]]
    for name in ("final_swa.pt", "final_ema.pt") if averages else ():
        a, b = (read_checkpoint(tmp_path / run / name)["model_state"] for run in ("straight", "broken"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    args = ["train", "--method", "damp", "--num-splits", "2", "--epochs", "3", "--batch-size", "16", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape.apps.cli", *args, "--out", str(tmp_path / "killed")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = tmp_path / "killed" / "checkpoints" / "epoch_001.pt"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # inside epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "final.pt").exists()
    resumed = cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert cli(*args, "--out", str(tmp_path / "straight")).returncode == 0
    a = read_checkpoint(tmp_path / "straight" / "final.pt")["model_state"]
    b = read_checkpoint(tmp_path / "killed" / "final.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    train(TrainConfig(epochs=1), tmp_path / "run", **QUIET)
    good = (tmp_path / "run" / "final.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a landscape checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "landscape-checkpoint", "obj": Crash()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="not a readable checkpoint"):  # weights_only refuses to unpickle code
        load_checkpoint(tmp_path / "code.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--method", "sgd"], "unknown method 'sgd'; choose from erm, sam"),
        (["--model", "resnet50"], "unknown model 'resnet50'"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--dataset", "cifar10"], "pass --data-root"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent"], "data root '/nonexistent' is not a directory"),
        (["--method", "sam", "--rho", "-0.1"], "argument --rho: must be >= 0, got -0.1"),
        (
            ["--method", "damp", "--rho", "0.1"],
            "--rho does not apply to --method damp (it takes --sigma, --num-splits, --perturb)",
        ),
        (["--model", "vgg16"], "needs images of at least 32x32; digits has 8x8 (use digits32)"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--nesterov", "--momentum", "0"], "Nesterov momentum requires a momentum"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
    from landscape.apps.cli.__main__ import main

    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_cli_refuses_to_overwrite_and_reports_truncated_resume(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--epochs", "1", "--no-progress", "--out", str(run)).returncode == 0
    again = cli("train", "--epochs", "1", "--out", str(run))
    assert (
        again.returncode == 2
        and "already holds files: pass --resume" in again.stderr
        and "Traceback" not in again.stderr
    )
    other = cli("train", "--epochs", "2", "--method", "sam", "--out", str(run), "--resume")
    assert (
        other.returncode == 2
        and "cannot resume" in other.stderr
        and "trained with --method erm (now sam);" in other.stderr
    )
    ckpt = run / "checkpoints" / "epoch_001.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    broken = cli("train", "--epochs", "2", "--out", str(run), "--resume")
    assert broken.returncode == 2 and "not a readable checkpoint" in broken.stderr and "Traceback" not in broken.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["demo"], ["compare"], ["explore"], ["plot"], ["robustness"]])
def test_help_has_examples(command):
    out = cli(*command, "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_version_and_help_load_only_what_they_need():
    from landscape import __version__

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"landscape {__version__}" and version.stderr == ""
    probe = (
        "import sys; from landscape.apps.cli.__main__ import main; code = main({argv}); "
        "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'dash') if m in sys.modules))"
    )
    bare = subprocess.run(
        [sys.executable, "-c", probe.format(argv=["--help"])], capture_output=True, text=True, cwd=ROOT
    )
    assert bare.stdout.strip().endswith("[]"), bare.stdout[-300:]  # the command list needs none of them
    sub = subprocess.run(
        [sys.executable, "-c", probe.format(argv=["compare", "--help"])], capture_output=True, text=True, cwd=ROOT
    )
    assert sub.stdout.strip().endswith("[]"), sub.stdout[-300:]  # its analyses load when it runs


def test_demo_writes_the_comparison_report(tmp_path):
    import numpy as np

    from landscape.io.robustness import read_robustness

    out = tmp_path / "demo"
    fast = ("--corruptions", "contrast,fog", "--severities", "1,5", "--no-progress", "--no-serve")
    r = cli(
        "demo",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--methods",
        "erm,damp",
        "--seeds",
        "0,1",
        "--surface-steps",
        "3",
        "--surface-samples",
        "50",
        *fast,
        env={"LANDSCAPE_CACHE": str(tmp_path / "cache")},
    )
    assert r.returncode == 0, r.stderr
    assert f"comparison report: {out / 'report' / 'report.md'}" in r.stdout and "| damp | 2 |" in r.stdout
    assert f"landscape explore {out}" in r.stdout and "RuntimeWarning" not in r.stderr
    from landscape.io.results import read_analysis

    summary = json.loads((out / "report" / "summary.json").read_text())
    rows = summary["rows"]
    assert [row["run"] for row in rows] == ["erm/seed0", "erm/seed1", "damp/seed0", "damp/seed1"]
    for row in rows:
        last = read_checkpoint(out / row["run"] / "final.pt")["metrics"][-1]
        h = read_analysis(out / row["run"] / "hessian.h5", "hessian")[1]
        assert row["test_error"] == last["test_error"] and row["lambda_max"] == h["eigenvalues"][0]
        assert row["trace"] == h["trace"] and np.isfinite(row["sharpness"])
        rob = read_robustness(out / row["run"] / "robustness.h5")
        baseline = out / "erm" / f"seed{row['seed']}" / "final.pt"  # ERM of the same seed
        assert rob.models == ["model", "baseline"] and rob.attrs["baseline"] == str(baseline)
        assert row["corruption_error"] == rob.mean() and row["mce"] == rob.mce()
    assert rows[0]["mce"] == 1.0  # ERM against itself
    assert [(out / row["run"] / "surface_2d.h5").exists() for row in rows] == [True, False, True, False]  # seed 0's
    damp = next(g for g in summary["groups"] if g["group"] == "damp")
    errors = [row["test_error"] for row in rows[2:]]
    assert damp["n"] == 2 and damp["test_error"]["mean"] == pytest.approx(np.mean(errors))
    assert damp["test_error"]["std"] == pytest.approx(np.std(errors, ddof=1))
    assert all((out / "report" / f"{n}.png").exists() for n in REPORT_FIGURES)
    again = cli(
        "demo",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--methods",
        "erm",
        "--seeds",
        "0",
        "--surface-steps",
        "3",
        "--surface-samples",
        "50",
        *fast,
        env={"LANDSCAPE_CACHE": str(tmp_path / "cache")},
    )
    assert "reusing finished run" in again.stdout


def test_accumulated_micro_batches_train_the_same_weights(tmp_path):
    """``--accumulate 4`` on the BatchNorm-free mlp: the weights of the run without it, to float32 rounding."""
    finals = []
    for k in (1, 4):
        cfg = TrainConfig(method="sam", model="mlp", epochs=2, batch_size=64, accumulate=k)
        train(cfg, tmp_path / f"k{k}", **QUIET)
        finals.append(read_checkpoint(tmp_path / f"k{k}" / "final.pt")["model_state"])
        assert json.loads((tmp_path / f"k{k}" / "config.json").read_text())["accumulate"] == k
    for name, value in finals[0].items():
        torch.testing.assert_close(finals[1][name], value, rtol=1e-4, atol=1e-5)
    from landscape.apps.cli.__main__ import main

    assert main(["train", "--out", str(tmp_path / "bad"), "--batch-size", "8", "--accumulate", "16"]) == 2


def test_swa_is_the_mean_of_the_epochs_weights_with_batchnorm_recomputed(tmp_path):
    """final_swa.pt: the hand-computed mean of the epoch checkpoints from --swa-start on, and BatchNorm statistics
    recomputed over the training set by our own routine (not torch's update_bn, which the run uses)."""
    from landscape._evaluation import recompute_bn_statistics
    from landscape.trainers.rundir import checkpoint_path

    cfg = TrainConfig(method="sam", epochs=3, swa_start=2, swa_lr=0.02, ema=0.0, save_every=1)
    train(cfg, tmp_path, **QUIET)
    epochs = [read_checkpoint(checkpoint_path(tmp_path, e)) for e in (2, 3)]
    swa_model, meta = load_checkpoint(tmp_path / "final_swa.pt")
    assert meta["epoch"] == 3 and [r["lr"] == 0.02 for r in meta["metrics"]] == [False, False, True]  # after epoch 2
    swa = swa_model.state_dict()
    for name, p in swa_model.named_parameters():
        torch.testing.assert_close(p.detach(), (epochs[0]["model_state"][name] + epochs[1]["model_state"][name]) / 2)
    ds = load_dataset("digits")
    loader = TensorLoader(ds.train_x, ds.train_y, batch_size=1000, mean=ds.mean, std=ds.std)
    by_hand, _ = load_checkpoint(tmp_path / "final_swa.pt")
    recompute_bn_statistics(by_hand, lambda: [by_hand(x) for x, _ in loader])
    for name, value in by_hand.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(swa[name], value, rtol=1e-4, atol=1e-6)
    from landscape.groups import group_runs
    from landscape.runs import find_run

    run = find_run(tmp_path)  # the run stands for its average: checkpoint, test metrics, group name
    record = json.loads((tmp_path / "averages.json").read_text())["swa"]
    assert run.checkpoint == tmp_path / "final_swa.pt" and run.metrics["test_error"] == record["test_error"]
    assert record["test_error"] == pytest.approx(evaluate(swa_model, TensorLoader(ds.test_x, ds.test_y,
                                                 batch_size=1000, mean=ds.mean, std=ds.std))["error"])  # fmt: skip
    assert group_runs([run])[0].name == "sam+swa"
    (tmp_path / "averages.json").write_text('{"swa": {"test_error": "low"}}')  # a hostile record: refused, not skipped
    with pytest.raises(ValueError, match="'test_error' is 'low', not a number"):
        find_run(tmp_path)
    ema = read_checkpoint(tmp_path / "final_ema.pt")["model_state"]  # decay 0: the last weights themselves
    for name, value in read_checkpoint(tmp_path / "final.pt")["model_state"].items():
        torch.testing.assert_close(ema[name], value)
    from landscape.apps.cli.__main__ import main

    assert main(["train", "--out", str(tmp_path / "bad"), "--epochs", "2", "--swa-start", "3"]) == 2


def test_fp16_runs_resume_with_their_loss_scale(tmp_path):
    """--precision fp16 (autocast and a GradScaler, CPU here): the scale is in every checkpoint, and a run stopped
    after epoch 1 and resumed ends with the uninterrupted run's weights and scale."""
    cfg = TrainConfig(method="sam", epochs=2, precision="fp16")
    train(cfg, tmp_path / "straight", **QUIET)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "broken", progress=False, log=crash_after("sam", 1))
    train(cfg, tmp_path / "broken", resume=True, **QUIET)
    a, b = (read_checkpoint(tmp_path / run / "final.pt") for run in ("straight", "broken"))
    assert a["scaler"]["scale"] == b["scaler"]["scale"] > 0 and "skipped_steps" in a["metrics"][-1]
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert a["metrics"][-1]["test_error"] < 50
