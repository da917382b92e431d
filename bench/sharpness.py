"""Issue 24's benchmark rows: evaluations saved by adaptive refinement on the demo's models (against the full grid,
side by side), and the sharpness suite's cost per measure.

Trains ERM and SAM small CNNs on the digits (the demo's model, 10 epochs), then for each: the full 65 x 65 surface
(with each point's bootstrap standard error over 10 blocks of the digits) and the refined one at two tolerances
(evaluations, seconds, the largest error in log10 of the loss, and the share of points within the full grid's 95 %
bootstrap interval), and every measure of ``landscape sharpness`` (value, passes over the data, seconds).

    OMP_NUM_THREADS=1 python bench/sharpness.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import report

import landscape
from landscape.flatness import suite
from landscape.trainers.train import TrainConfig, train

MEASURES = ("sam", "apgd", "apgd_linf@0.002", "apgd_adaptive", "average", "keskar@0.001", "fisher_rao", "pacbayes",
            "apgd_m128")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--points", type=int, default=65)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    n = args.points
    grid = f"-1:1:{n}"
    lines = [
        f"adaptive refinement: {n} x {n} train-loss surface of the demo's small CNN, {args.samples} digits, "
        f"CPU {torch.get_num_threads()} thread(s)",
        "",
        "| model | variant | evaluations | x fewer | seconds | x faster | max error (log10 loss) | within the 95 % "
        "bootstrap interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    suite_lines = [
        "",
        f"the sharpness suite: cost per measure ({args.samples} digits, rho 0.1 unless named, 20 steps)",
        "",
        "| model | measure | value | spread | passes | seconds |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("erm", "sam"):
            run = Path(tmp) / method
            train(TrainConfig(method=method, epochs=10, device="cpu"), run, progress=False, log=lambda line: None)
            problem = landscape.Problem.from_checkpoint(run / "final.pt", ["train"], samples=args.samples)
            tic = time.perf_counter()
            full = landscape.surface(problem, grid, grid, progress=False)
            full_s = time.perf_counter() - tic
            truth = np.log10(full.values["train_loss"])
            halfwidth = 1.96 * landscape.surface(problem, grid, grid, bootstrap=10, progress=False).spread["train_loss"]
            lines.append(f"| {method} | full grid | {n * n} | 1.00 | {full_s:.1f} | 1.00 | 0 | 100 % |")
            for tol in (0.02, 0.05):
                tic = time.perf_counter()
                r = landscape.surface(problem, grid, grid, refine=tol, progress=False)
                seconds = time.perf_counter() - tic
                count = r.attrs["evaluations"]
                err = float(np.max(np.abs(np.log10(r.values["train_loss"]) - truth)))
                inside = float(np.mean(np.abs(r.values["train_loss"] - full.values["train_loss"]) <= halfwidth))
                lines.append(
                    f"| {method} | `refine={tol}` | {count} | {n * n / count:.2f} | {seconds:.1f} | "
                    f"{full_s / seconds:.2f} | {err:.3f} | {inside:.1%} |"
                )
            for name, s in suite(problem, MEASURES, steps=20).items():
                suite_lines.append(
                    f"| {method} | {name} | {float(s):.4g} | {s.std:.2g} | {s.evaluations} | {s.seconds:.2f} |"
                )
    report(lines + suite_lines, args.out, "sharpness.md")


if __name__ == "__main__":
    main()
