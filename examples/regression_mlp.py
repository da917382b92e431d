"""A regression MLP with ``MSELoss``: Hessian spectrum and trace, the Gauss-Newton matrix, a 1-D slice, a sweep.

Data: scikit-learn's diabetes dataset (442 patients, 10 standardized features, the disease
progression a year later as the target, standardized too). The data is a pair of tensors,
which the toolkit keeps on the device and cuts into batches of 128.

    .venv/bin/python examples/regression_mlp.py            # prints the spectra; writes runs/examples/mlp/
    .venv/bin/python examples/regression_mlp.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_diabetes

import landscape


def diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)


def mlp(width: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(10, width), nn.Tanh(), nn.Linear(width, 1))


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """Full-batch Adam: a plain loop."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return model


def build(steps: int = 500, width: int = 32) -> landscape.Problem:
    """The trained regression problem (the tests compare its Hessian with a dense one)."""
    torch.manual_seed(0)
    x, y = diabetes()
    model = fit(mlp(width), x, y, steps)
    return landscape.Problem(model, (x, y), nn.MSELoss(), batch_size=128, label="mlp-mse")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/examples/mlp")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    problem = build(steps=100 if args.quick else 500)
    print(problem)
    print(f"train MSE {problem.evaluate('train')['loss']:.4f}")
    h = landscape.hessian(
        problem, top_k=5, trace=True, density=True, out=out / "hessian.h5", overwrite=True, progress=False
    )
    print("Hessian top-5:", np.array2string(h.eigenvalues, precision=4), f"({h.eigen_matvecs} products)")
    print(f"Hessian trace: {h.trace:.4f} (95% CI {h.trace_ci95[0]:.4f} .. {h.trace_ci95[1]:.4f})")
    g = landscape.hessian(problem, top_k=5, curvature="ggn", progress=False)
    print("Gauss-Newton top-5:", np.array2string(g.eigenvalues, precision=4))
    s = landscape.surface(
        problem, "-1:1:21" if args.quick else "-1:1:41", out=out / "surface_1d.h5", overwrite=True, progress=False
    )
    print(f"1-D slice: loss {s.values['train_loss'].min():.4f} .. {s.values['train_loss'].max():.4f}")
    sw = landscape.sweep(
        problem,
        [0, 0.1, 0.2, 0.5, 1.0],
        kinds=("random", "adversarial"),
        out=out / "sweep.h5",
        overwrite=True,
        progress=False,
    )
    for kind in sw.kinds:
        print(
            f"{kind:12s} loss at r = {', '.join(f'{r:g}' for r in sw.radii)}: "
            + ", ".join(f"{v:.4f}" for v in sw.curve(kind))
        )
    print(f"SAM sharpness at rho 0.1: {landscape.sharpness(problem, 0.1):.5f}")


if __name__ == "__main__":
    main()
