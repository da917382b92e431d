"""Several processes (torchrun, gloo, 2 ranks on CPU) compute what one process computes: training for ERM, SAM and
DAMP, SyncBatchNorm, resume after kill -9 of one rank, and the Hessian and sweeps over sharded data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import landscape
from landscape.io import read_sweep
from landscape.io.hessian import read_hessian

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process: the same kernels on both sides
pytestmark = pytest.mark.slow


def run(*args, **kw):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=ENV, **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def cli(*args):
    return run("-m", "landscape.apps.cli", *args)


def torchrun(*args, port):
    return run("-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", *args)


def weights(run_dir):
    return torch.load(Path(run_dir) / "final.pt", weights_only=True)


def assert_same_run(a, b, rtol):
    wa, wb = weights(a), weights(b)
    for k, v in wa["model_state"].items():
        if v.is_floating_point():
            torch.testing.assert_close(wb["model_state"][k], v, rtol=rtol, atol=rtol * float(v.abs().max()), msg=k)
        else:
            assert torch.equal(wb["model_state"][k], v), k
    for ra, rb in zip(wa["metrics"], wb["metrics"]):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=rtol)


MLP = ["--model", "mlp", "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def mlp_runs(tmp_path_factory):
    """ERM, SAM and DAMP (M = 4) on a BatchNorm-free MLP: one process, and two ranks via --nproc 2."""
    root = tmp_path_factory.mktemp("mlp")
    track = ["--track-curvature", "5", "--track-data", "300"]  # ERM tracks its curvature, on either side
    for method, extra in (("erm", track), ("sam", []), ("damp", ["--num-splits", "4"])):
        cli("train", "--method", method, *extra, *MLP, "--out", str(root / method / "one"))
        r = cli("train", "--method", method, *extra, *MLP, "--nproc", "2", "--out", str(root / method / "two"))
        assert r.stdout.count(f"{method} epoch 2/2") == 1  # rank 0 alone reports
    cli("train", "--method", "sam", *MLP, "--accumulate", "2", "--nproc", "2", "--out", str(root / "sam" / "micro"))
    return root


@pytest.mark.parametrize("method", ["erm", "sam", "damp"])
def test_two_ranks_train_what_one_process_trains(mlp_runs, method):
    assert_same_run(mlp_runs / method / "one", mlp_runs / method / "two", rtol=1e-5)
    import json

    config = json.loads((mlp_runs / method / "two" / "config.json").read_text())
    assert config["world_size"] == 2 and config["rank_batch_size"] == 64


def test_two_ranks_accumulating_micro_batches_train_what_one_process_trains(mlp_runs):
    """SAM on 2 ranks, each running its shard as 2 micro-batches: the one-process run's weights."""
    assert_same_run(mlp_runs / "sam" / "one", mlp_runs / "sam" / "micro", rtol=1e-5)


def test_sync_batchnorm_on_two_ranks_is_batchnorm_of_the_global_batch(tmp_path):
    """small_cnn (BatchNorm, max pooling) in float64, ERM and SAM with --sync-bn: two ranks = one process."""
    script = str(ROOT / "tests" / "distributed_train.py")
    run(script, str(tmp_path / "one"), "erm", "sam")
    torchrun(script, str(tmp_path / "two"), "erm", "sam", port=29531)
    for method in ("erm", "sam"):
        assert weights(tmp_path / "one" / method)["model_state"]["1.weight"].dtype == torch.float64
        assert_same_run(tmp_path / "one" / method, tmp_path / "two" / method, rtol=1e-9)


def rank_pid(out_dir, rank):
    """The pid of the training process of ``rank`` writing ``out_dir`` (read from /proc)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(out_dir).encode() in cmdline and f"RANK={rank}".encode() in environ and b"landscape.apps.cli" in cmdline:
            return int(proc.name)
    return None


def test_kill_9_of_one_rank_then_resume_equals_the_uninterrupted_run(tmp_path):
    args = [
        "train",
        "--method",
        "damp",
        "--num-splits",
        "4",
        "--model",
        "mlp",
        "--epochs",
        "12",
        "--no-progress",
        "--nproc",
        "2",
    ]
    cli(*args, "--out", str(tmp_path / "straight"))
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape.apps.cli", *args, "--out", str(out)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (out / "checkpoints" / "epoch_002.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    pid = rank_pid(out, 1)
    assert pid is not None and proc.poll() is None, "the run ended before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (out / "final.pt").exists(), "the run finished before the kill"
    assert "rank 0 stopped: another rank failed" in err  # the survivor says why instead of hanging
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err  # and torchrun's report is gone
    resumed = cli(*args, "--out", str(out), "--resume")
    assert "resuming" in resumed.stdout
    a, b = weights(tmp_path / "straight"), weights(out)
    for k, v in a["model_state"].items():
        assert torch.equal(b["model_state"][k], v), k  # bit for bit
    assert [r["train_loss"] for r in a["metrics"]] == [r["train_loss"] for r in b["metrics"]]


def test_hessian_and_sweep_on_two_ranks_equal_one_process(runs, tmp_path):
    ckpt = str(runs / "erm" / "final.pt")
    hess = [
        "hessian",
        ckpt,
        "--top-k",
        "3",
        "--trace",
        "12",
        "--samples",
        "300",
        "--batch-size",
        "100",
        "--no-progress",
    ]
    sweep = ["sweep", ckpt, "--radii", "0:0.3:3", "--trials", "2", "--steps", "3", "--samples", "300", "--no-progress"]
    cli(*hess, "--out", str(tmp_path / "h1.h5"))
    cli(*sweep, "--out", str(tmp_path / "w1.h5"))
    torchrun("-m", "landscape.apps.cli", *hess, "--out", str(tmp_path / "h2.h5"), port=29532)
    torchrun("-m", "landscape.apps.cli", *sweep, "--out", str(tmp_path / "w2.h5"), port=29533)
    h1, h2 = read_hessian(tmp_path / "h1.h5"), read_hessian(tmp_path / "h2.h5")
    np.testing.assert_allclose(h2.eigenvalues, h1.eigenvalues, rtol=1e-5)
    assert h2.trace == pytest.approx(h1.trace, rel=1e-5) and h2.eigen_matvecs == h1.eigen_matvecs
    w1, w2 = read_sweep(tmp_path / "w1.h5"), read_sweep(tmp_path / "w2.h5")
    np.testing.assert_allclose(w2.values["losses"], w1.values["losses"], rtol=1e-5)
    np.testing.assert_allclose(w2.values["accs"], w1.values["accs"], rtol=1e-12)  # counts summed in another order


def test_a_curve_trained_on_two_ranks_is_the_curve_of_one_process(mlp_runs, tmp_path):
    """``landscape connect`` under torchrun: every rank draws the same t and takes its half of each batch, the
    gradients summed (a BatchNorm-free model: the same steps up to float sums); the points are shared out."""
    a, b = mlp_runs / "erm" / "one" / "final.pt", mlp_runs / "sam" / "one" / "final.pt"
    args = ["--epochs", "2", "--samples", "300", "--batch-size", "100", "--points", "3", "--no-progress"]
    torchrun(
        "-m", "landscape.apps.cli", "connect", str(a), str(b), *args, "--out", str(tmp_path / "two.h5"), port=29534
    )
    problem = landscape.Problem.from_checkpoint(a, samples=300, batch_size=100)
    one = landscape.connect(problem, b, epochs=2, points=3, progress=False)
    two = landscape.read(tmp_path / "two.h5")
    np.testing.assert_allclose(two.values["train_loss"], one.values["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(two.extras["train_loss_history"], one.history, rtol=1e-5)
    assert two.attrs["barrier_train"] == pytest.approx(one.barrier["train"], rel=1e-4, abs=1e-7)


def test_the_curvature_tracked_on_two_ranks_is_that_of_one_process(mlp_runs):
    """``--track-curvature`` under torchrun: each rank measures on its shard, products and gradients summed."""
    one, two = ([json.loads(line) for line in (mlp_runs / "erm" / run / "curvature.jsonl").read_text().splitlines()]
                for run in ("one", "two"))  # fmt: skip
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(0, 22, 5))
    for a, b in zip(one, two):
        np.testing.assert_allclose(b["eigenvalues"], a["eigenvalues"], rtol=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["critical_lr"] == pytest.approx(a["critical_lr"], rel=1e-2)  # a bisection to 1e-3
