"""Top-1 / top-5 Hessian eigenvalues: this toolkit's Lanczos vs PyHessian's power iteration, in one run.

Same trained model and data (full digits training split, eval mode, float32, CPU). The
reference spectrum comes from our Lanczos on a float64 copy at tol 1e-9. Also the cost of
one Hessian-vector product relative to one gradient.

    OMP_NUM_THREADS=1 python bench/hessian.py        # needs: pip install pyhessian==0.1
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from report import report

from landscape._evaluation import EvalSet
from landscape._lanczos import lanczos
from landscape.curvature import CurvatureOperator
from landscape.problem import Problem
from landscape.trainers.train import TrainConfig, train


def ours(model: nn.Module, data: EvalSet, k: int, seed: int) -> tuple[np.ndarray, int]:
    with CurvatureOperator(Problem(model, (data.x, data.y), batch_size=len(data), check=False)) as op:
        res = lanczos(op.matvec, op.size, k, tol=1e-3, seed=seed, device=op.device)
        return res.eigenvalues, op.matvecs


def pyhessian_eigs(model: nn.Module, data: EvalSet, k: int, seed: int) -> tuple[np.ndarray, int]:
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class of that name)

    calls = [0]
    original = ph.hessian_vector_product

    def counting(*a, **kw):
        calls[0] += 1
        return original(*a, **kw)

    ph.hessian_vector_product = counting
    try:
        torch.manual_seed(seed)  # PyHessian draws its start vectors from the global RNG
        h = ph.hessian(model, nn.CrossEntropyLoss(), data=(data.x, data.y), cuda=data.x.is_cuda)
        calls[0] = 0
        vals, _ = h.eigenvalues(top_n=k)
    finally:
        ph.hessian_vector_product = original
    return np.array(vals), calls[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--hvp-only", action="store_true", help="only the HVP-vs-gradient timing")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        train(
            TrainConfig(model="small_cnn", model_kwargs={"width": args.width}, epochs=10, device="cpu"),
            tmp,
            progress=False,
            log=lambda line: None,
        )
        problem = Problem.from_checkpoint(Path(tmp) / "final.pt", device=device)
    model, train_set = problem.model, problem.splits["train"].tensors
    data = EvalSet(train_set.x, train_set.y, batch_size=len(train_set))  # one batch, like PyHessian's data=
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())

    ref_model = copy.deepcopy(model).double()  # the reference spectrum in float64
    with CurvatureOperator(Problem(ref_model, (data.x.double(), data.y), batch_size=len(data))) as op:
        ref = lanczos(op.matvec, op.size, 5, tol=1e-9, max_iter=200).eigenvalues

    rows: dict[str, list] = {}
    for rep in range(0 if args.hvp_only else args.reps):
        for k in (1, 5):
            for name, fn in (
                ("landscape Lanczos (tol 1e-3)", ours),
                ("PyHessian 0.1 eigenvalues (tol 1e-3)", pyhessian_eigs),
            ):
                tic = time.perf_counter()
                vals, hvps = fn(model, data, k, 1000 + rep)
                seconds = time.perf_counter() - tic
                relerr = float(np.max(np.abs(np.sort(vals)[::-1] - ref[:k]) / np.abs(ref[:k])))
                rows.setdefault(f"{name}|{k}", []).append((seconds, hvps, relerr))

    # one HVP (graph cached) vs one gradient of the unmodified model (a copy: the operator patches BatchNorm),
    # interleaved
    plain = copy.deepcopy(model)
    params = list(plain.parameters())
    grad_t, hvp_t = [], []
    with CurvatureOperator(Problem(model, (data.x, data.y), batch_size=len(data))) as op:
        v = torch.randn(op.size)
        op.matvec(v)  # builds the cached graph
        for _ in range(9):
            sync(device)
            tic = time.perf_counter()
            loss = nn.functional.cross_entropy(plain(data.x), data.y)
            torch.autograd.grad(loss, params)
            sync(device)
            grad_t.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            op.matvec(v)
            sync(device)
            hvp_t.append(time.perf_counter() - tic)

    lines = [
        f"## Hessian: small_cnn(width={args.width}) {n_params:,} params, {len(data)} digits training images, "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU {torch.get_num_threads()} thread(s)'}"
        "; "
        f"reference top-5 {np.round(ref, 5).tolist()}",
        "",
        "| solver | k | seconds (median) | HVPs (median [min-max]) | max rel. error (worst rep) |",
        "|---|---|---|---|---|",
    ]
    for key, vals in rows.items():
        name, k = key.split("|")
        secs, hvps, errs = zip(*vals)
        lines.append(
            f"| {name} | {k} | {statistics.median(secs):.2f} | {int(statistics.median(hvps))} "
            f"[{min(hvps)}-{max(hvps)}] | {max(errs):.1e} |"
        )
    for k in (1, 5) if rows else ():
        ratio = statistics.median(
            a[0] / b[0]
            for a, b in zip(
                rows[f"landscape Lanczos (tol 1e-3)|{k}"], rows[f"PyHessian 0.1 eigenvalues (tol 1e-3)|{k}"]
            )
        )
        lines.append(f"\ntop-{k}: our time / PyHessian time = {ratio:.2f} (median of per-rep ratios)")
    lines.append(
        f"\none HVP (cached graph) / one gradient: {statistics.median(h / g for h, g in zip(hvp_t, grad_t)):.2f} "
        f"({1000 * statistics.median(hvp_t):.0f} ms vs {1000 * statistics.median(grad_t):.0f} ms)"
    )
    report(lines, args.out, f"hessian-{device.type}.md")


if __name__ == "__main__":
    main()
