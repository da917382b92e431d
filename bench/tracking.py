"""Cost of tracking the curvature during training.

1. The overhead of ``landscape train --track-curvature 100`` on the demo's run (``small_cnn`` on the digits,
   batch 128, 15 epochs; the tracker on all 1,437 training images, then on 500): the same run with and without
   it, interleaved.
2. The Hessian-vector products that warm starts save: the edge-of-stability example's trajectory (full-batch
   gradient descent, tanh MLP, 500 digits) tracked every 50 steps twice in one run — each measurement's Lanczos
   started from the previous eigenvectors, and from a fresh random vector.

    OMP_NUM_THREADS=1 python bench/tracking.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from report import report

import landscape
from landscape.trainers.train import TrainConfig, train


def digits():
    """The example's data (``examples/edge_of_stability.py``), loaded from its file: no import path changed."""
    spec = importlib.util.spec_from_file_location("edge_of_stability", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digits()


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "edge_of_stability.py"


def overhead_rows(epochs: int, rounds: int) -> list[str]:
    base = TrainConfig(model="small_cnn", dataset="digits", epochs=epochs, device="cpu")
    runs = {"plain": base, "--track-curvature 100": replace(base, track_curvature=100)}
    runs["--track-curvature 100 --track-data 500"] = replace(base, track_curvature=100, track_data=500)
    times: dict[str, list[float]] = {name: [] for name in runs}
    rows: dict[str, list[dict]] = {}
    for _ in range(rounds):
        for name, cfg in runs.items():
            with tempfile.TemporaryDirectory() as tmp:
                tic = time.perf_counter()
                train(cfg, Path(tmp) / "run", progress=False, log=lambda line: None)
                times[name].append(time.perf_counter() - tic)
                if cfg.track_curvature:
                    text = (Path(tmp) / "run" / "curvature.jsonl").read_text()
                    rows[name] = [json.loads(line) for line in text.splitlines()]
    steps = epochs * (1437 // 128)
    plain = statistics.median(times["plain"])
    lines = [
        f"`small_cnn`, digits, batch 128, {epochs} epochs ({steps} steps), {rounds} interleaved rounds, "
        f"{torch.get_num_threads()} threads",
        "",
        "| run | seconds (median) | x plain | measurements | s per measurement (eigenvalues / update) |",
        "|---|---|---|---|---|",
    ]
    for name, ts in times.items():
        got = rows.get(name, [])
        per = (
            f"{statistics.mean(r['seconds'] for r in got):.2f} ({statistics.mean(r['eigen_seconds'] for r in got):.2f}"
            f" / {statistics.mean(r['update_seconds'] for r in got):.2f})"
            if got
            else "—"
        )
        lines.append(
            f"| {name} | {statistics.median(ts):.1f} | {statistics.median(ts) / plain:.2f} | {len(got)} | {per} |"
        )
    return lines


def warm_rows(steps: int, every: int) -> list[str]:
    x, y = digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 100), nn.Tanh(), nn.Linear(100, 100), nn.Tanh(), nn.Linear(100, 10))
    problem = landscape.Problem(model, (x, y), nn.MSELoss(), batch_size=len(y))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    trackers = {
        "warm": landscape.CurvatureTracker(problem, every=every),
        "cold": landscape.CurvatureTracker(problem, every=every, warm_start=False),
    }
    for step in range(steps + 1):
        for t in trackers.values():
            t.step(step, optimizer)
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
    lines = [
        f"edge-of-stability example: {steps} steps, top eigenvalue every {every} ({len(trackers['warm'].history)} "
        "measurements), Lanczos tol 1e-4",
        "",
        "| Lanczos start | products | seconds | largest difference between the two |",
        "|---|---|---|---|",
    ]
    diff = max(
        abs(a["eigenvalues"][0] - b["eigenvalues"][0]) / b["eigenvalues"][0]
        for a, b in zip(trackers["warm"].history, trackers["cold"].history)
    )
    for name, t in trackers.items():
        products = sum(r["eigen_products"] for r in t.history)
        seconds = sum(r["eigen_seconds"] for r in t.history)
        lines.append(f"| {name} | {products} | {seconds:.2f} | {diff:.1e} (relative) |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="the demo's [%(default)s]")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    lines = ["## Warm starts", "", *warm_rows(2000, 50), "", "## Overhead in training", ""]
    lines += overhead_rows(args.epochs, args.rounds)
    report(lines, args.out, "tracking.md")


if __name__ == "__main__":
    main()
