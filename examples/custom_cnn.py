"""Your own CNN and training loop, then the toolkit: loss surface, Hessian, perturbation sweep, trajectory, report.

A small CNN is trained twice on scikit-learn's handwritten digits with a plain PyTorch loop,
once with SGD and once with SAM (the toolkit's optimizer, driven by an ordinary closure).
Each run saves a weight snapshot and a metrics.jsonl line per epoch; the Python API then
analyses the final weights, and ``landscape compare`` puts the two runs side by side.

    .venv/bin/python examples/custom_cnn.py            # runs/examples/cnn/{sgd,sam,report}
    .venv/bin/python examples/custom_cnn.py --quick    # a few seconds (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import landscape
from landscape.trainers.metrics import evaluate
from landscape.trainers.optim import SAM


class CNN(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def digits() -> tuple[TensorDataset, TensorDataset]:
    """The 1,797 8x8 digits scaled to [0, 1]; a fixed split of 1,400 training and 397 test images."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return TensorDataset(x[perm[:1400]], y[perm[:1400]]), TensorDataset(x[perm[1400:]], y[perm[1400:]])


def train(
    method: str, seed: int, train_set: TensorDataset, test_set: TensorDataset, epochs: int, run: Path
) -> nn.Module:
    """A plain training loop; SAM only changes how the step is taken."""
    torch.manual_seed(seed)
    model = CNN()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    optimizer = SAM(model, sgd, rho=0.05) if method == "sam" else sgd
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=500)
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("")
    for epoch in range(epochs):
        model.train()
        tic, total = time.perf_counter(), 0.0
        for x, y in loader:
            if method == "sam":
                loss = optimizer.step(lambda: F.cross_entropy(model(x), y))  # a forward: SAM runs both passes
            else:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
            total += loss.item() * len(y)
        seconds = time.perf_counter() - tic
        landscape.save_snapshot(model, run / "snapshots", epoch + 1)  # for landscape.trajectory
        test = evaluate(model, test_loader)  # error (%), nll, ece
        row = {
            "epoch": epoch + 1,
            "train_loss": total / len(train_set),
            "test_error": test["error"],
            "test_nll": test["nll"],
            "test_ece": test["ece"],
            "seconds": seconds,
        }
        with open(run / "metrics.jsonl", "a") as f:  # what `landscape compare` reads
            f.write(json.dumps(row) + "\n")
    return model.eval()


def analyse(
    model: nn.Module, method: str, train_set: TensorDataset, test_set: TensorDataset, run: Path, quick: bool
) -> dict:
    problem = landscape.Problem(
        model,
        {"train": DataLoader(train_set, batch_size=700), "test": DataLoader(test_set, batch_size=500)},
        nn.CrossEntropyLoss(),
        label=method,
    )
    steps = 5 if quick else 21
    landscape.surface(
        problem,
        np.linspace(-1, 1, steps),
        np.linspace(-1, 1, steps),
        out=run / "surface_2d.h5",
        overwrite=True,
        progress=False,
    )
    h = landscape.hessian(
        problem,
        top_k=2 if quick else 5,
        trace=10 if quick else 60,
        out=run / "hessian.h5",
        overwrite=True,
        progress=False,
    )
    sw = landscape.sweep(
        problem,
        np.linspace(0, 0.5, 3 if quick else 11),
        kinds=("random", "adversarial"),
        trials=2 if quick else 5,
        steps=3 if quick else 10,
        out=run / "sweep.h5",
        overwrite=True,
        progress=False,
    )
    landscape.trajectory(
        problem,
        run / "snapshots",
        out=run / "trajectory.h5",
        overwrite=True,
        progress=False,
        x=np.linspace(-1, 1, 5) if quick else None,
        y=np.linspace(-1, 1, 5) if quick else None,
    )
    adversarial = sw.curve("adversarial")
    return {
        "top eigenvalue": float(h.eigenvalues[0]),
        "trace": float(h.trace),
        "sharpness (r=0.5)": float(adversarial[-1] - adversarial[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/examples/cnn")
    ap.add_argument("--epochs", type=int, default=None, help="[10; 3 with --quick]")
    ap.add_argument("--seeds", default="0", help="comma-separated: one run per method and seed [%(default)s]")
    ap.add_argument("--quick", action="store_true", help="small grids and few epochs")
    args = ap.parse_args()
    out, epochs = Path(args.out), args.epochs or (3 if args.quick else 10)
    seeds = [int(s) for s in args.seeds.split(",")]
    train_set, test_set = digits()
    rows: dict[str, list[dict]] = {"sgd": [], "sam": []}
    for method in rows:
        for seed in seeds:
            run = out / (method if len(seeds) == 1 else f"{method}-seed{seed}")
            model = train(method, seed, train_set, test_set, epochs, run)
            test_error = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_error"]
            rows[method].append(
                {"test error (%)": test_error, **analyse(model, method, train_set, test_set, run, args.quick)}
            )
    columns = list(rows["sgd"][0])
    print(f"{len(seeds)} seed(s), mean ± std\n| method | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for method, runs in rows.items():
        cells = [np.array([r[c] for r in runs]) for c in columns]
        print(
            f"| {method} | "
            + " | ".join(f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0:.2g}" for v in cells)
            + " |"
        )
    dirs = sorted(p for p in out.iterdir() if (p / "metrics.jsonl").is_file())
    landscape.compare(dirs, out / "report", rho=0.5)


if __name__ == "__main__":
    main()
