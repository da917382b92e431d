"""Perturbation-sweep time through the folded view (the default) against the model as written, interleaved.

The same problem, radii, kinds and seeds both ways (``landscape.sweep(..., fast=False)`` is the
model as written); the table gives seconds per sweep, the ratio and the largest relative
difference of the mean losses.

    OMP_NUM_THREADS=1 python bench/sweep.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import report

import landscape
from landscape.trainers.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            model=args.model, model_kwargs={"width": args.width}, dataset=args.dataset, epochs=3, device="cpu"
        )
        train(cfg, tmp, progress=False, log=lambda line: None)
        problem = landscape.Problem.from_checkpoint(Path(tmp) / "final.pt", ["train"], samples=args.samples)
    n_params = sum(p.numel() for p in problem.model.parameters())

    def run(fast: bool) -> landscape.Sweep:
        return landscape.sweep(problem, [0.05, 0.1], trials=3, steps=5, fast=fast, progress=False)

    times: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    for _ in range(args.rounds):
        for fast in (False, True):
            tic = time.perf_counter()
            results[fast] = run(fast)
            times[fast].append(time.perf_counter() - tic)
    plain, folded = (results[k].values["loss_mean"] for k in (False, True))
    diff = float(np.max(np.abs(folded - plain) / np.abs(plain)))
    ratio = statistics.median(a / b for a, b in zip(times[False], times[True]))
    lines = [
        f"## sweep: {args.model}(width={args.width}) {n_params:,} params, {args.samples} {args.dataset} samples, "
        f"4 kinds x 2 radii (3 trials, 5 ascent steps), CPU {torch.get_num_threads()} thread(s); "
        f"median of {args.rounds} interleaved rounds",
        "",
        "| variant | seconds per sweep | x as written |",
        "|---|---|---|",
        f"| `fast=False` (the model as written) | {statistics.median(times[False]):.2f} | 1.00 |",
        f"| default (folded, channels-last on CPU) | {statistics.median(times[True]):.2f} | {ratio:.2f} |",
        "",
        f"max relative difference of the mean losses: {diff:.1e}",
    ]
    report(lines, args.out, f"sweep-{args.model}.md")


if __name__ == "__main__":
    main()
