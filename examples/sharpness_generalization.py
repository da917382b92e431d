"""Which sharpness measure predicts generalization? (Andriushchenko et al. 2023; Jiang et al. 2019) in one command.

Trains a grid of small CNNs on the digits (methods x learning rates x seeds), measures each run's sharpness by
several definitions (``landscape sharpness``: the SAM ascent, Auto-PGD, adaptive Auto-PGD, the average case, the
Fisher-Rao measure, PAC-Bayes flatness), then ranks the measures by Kendall's τ with the generalization gap (test
error minus training error), with bootstrap intervals and the granulated τ over the method and learning-rate axes.
The runs land in one folder, so ``landscape compare`` draws the same table and a scatter per measure.

    .venv/bin/python examples/sharpness_generalization.py                 # about 3 minutes on 2 cores
    .venv/bin/python examples/sharpness_generalization.py --quick         # the tests' settings (seconds)
    .venv/bin/landscape compare runs/examples/sharpness/*/* --out runs/examples/sharpness_report
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

import landscape
from landscape._system.files import write_json
from landscape.correlation import correlation_table
from landscape.flatness import suite
from landscape.report import markdown_table
from landscape.trainers.rundir import FINAL
from landscape.trainers.train import TrainConfig, train

MEASURES = ("sam@0.1", "apgd@0.1", "apgd_adaptive@0.05", "average@0.5", "fisher_rao", "pacbayes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="erm,sam")
    p.add_argument("--lrs", default="0.02,0.05,0.1,0.2")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--samples", type=int, default=500, help="training images the measures average over")
    p.add_argument("--out", default="runs/examples/sharpness")
    p.add_argument("--quick", action="store_true", help="2 methods x 2 learning rates x 1 seed, 2 epochs")
    args = p.parse_args()
    methods, lrs, seeds = args.methods.split(","), [float(x) for x in args.lrs.split(",")], args.seeds.split(",")
    epochs, measures = args.epochs, MEASURES
    if args.quick:
        lrs, seeds, epochs, measures = [0.02, 0.2], ["0"], 2, ("sam@0.1", "apgd@0.1", "fisher_rao")
    torch.set_num_threads(1)
    base = TrainConfig(model="small_cnn", dataset="digits", epochs=epochs, device="cpu")
    runs = []
    for method in methods:
        for lr in lrs:
            for seed in seeds:
                run = Path(args.out) / f"{method}_lr{lr:g}" / f"seed{seed}"
                if not (run / FINAL).is_file():
                    train(replace(base, method=method, lr=lr, seed=int(seed)), run, progress=False)
                if not (run / "sharpness.json").is_file():
                    problem = landscape.Problem.from_checkpoint(run / FINAL, samples=args.samples, device="cpu")
                    found = suite(problem, measures, steps=10, trials=3)
                    write_json(run / "sharpness.json", {"measures": {k: s.as_dict() for k, s in found.items()}})
                print(f"{run}: done")
                runs.append(run)
    found = landscape.correlate(runs, resamples=1000)
    print(markdown_table(*correlation_table(found)))


if __name__ == "__main__":
    main()
