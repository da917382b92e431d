"""The edge of stability (Cohen et al. 2021, figure 1) in one command: full-batch gradient descent on a tanh MLP
with the sharpness tracked step by step.

A 64-100-100-10 tanh MLP learns 500 digits (a fixed seeded subset, pixel values 0-16 as in scikit-learn's digits)
with the squared error against one-hot targets, by full-batch gradient descent at η = 0.2. A
``landscape.CurvatureTracker`` in the plain loop measures the top Hessian eigenvalue every 50 steps: it rises
(progressive sharpening) until it reaches 2/η = 10, then hovers there while the loss keeps falling, not
monotonically.

    .venv/bin/python examples/edge_of_stability.py            # writes runs/examples/eos/: curvature.jsonl, the figure
    .venv/bin/python examples/edge_of_stability.py --steps 4000 --every 25
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import landscape
from landscape.data import load_dataset
from landscape.groups import curvature_curves
from landscape.plots import mpl


def digits(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset("digits").split("train")
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return (x[pick].float() / 255 * 16).flatten(1), F.one_hot(y[pick], 10).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--out", default="runs/examples/eos")
    p.add_argument("--quick", action="store_true", help="the tests' settings (the default ones)")
    args = p.parse_args()
    torch.set_num_threads(1)  # a 500-image MLP: one thread is the fastest here
    x, y = digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 100), nn.Tanh(), nn.Linear(100, 100), nn.Tanh(), nn.Linear(100, 10))
    problem = landscape.Problem(model, (x, y), nn.MSELoss(), batch_size=len(y))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    out = Path(args.out)
    (out / "curvature.jsonl").unlink(missing_ok=True)
    tracker = landscape.CurvatureTracker(problem, every=args.every, out=out / "curvature.jsonl")
    for step in range(args.steps + 1):
        tracker.step(step, optimizer)
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
    top = np.array([r["eigenvalues"][0] for r in tracker.history])
    limit = 2 / args.lr
    reached = int(np.argmax(top >= 0.95 * limit)) if (top >= 0.95 * limit).any() else len(top)
    summary = {
        "threshold": limit,
        "first": float(top[0]),
        "reached_at_step": tracker.history[reached]["step"] if reached < len(top) else None,
        "median_after": float(np.median(top[reached:])) if reached < len(top) else None,
        "max": float(top.max()),
        "products": int(sum(r["eigen_products"] for r in tracker.history)),
    }
    figure = mpl.sharpness_curves([(f"GD, η = {args.lr}", curvature_curves(tracker.history))])
    mpl.save(figure, str(out / "edge_of_stability.png"), "png")
    print(json.dumps(summary))
    print(f"wrote {out / 'curvature.jsonl'} and {out / 'edge_of_stability.png'}")


if __name__ == "__main__":
    main()
