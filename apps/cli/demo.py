"""``landscape demo``: the main job on the embedded digits, end to end."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from landscape.jobs import EvalOptions, hessian_analysis, random_surface, sweep_analysis
from landscape.store import read_analysis, read_surface, read_sweep
from landscape.sweep import SweepSettings
from trainers import TrainConfig, read_checkpoint, train
from trainers.checkpoint import atomic_write
from trainers.train import newest_checkpoint

DEMO_METHODS = ("erm", "sam", "asam", "amp", "damp")
SWEEP_RADII = np.linspace(0, 0.5, 6)
SHARPNESS_RHO = 0.1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train ERM, SAM, ASAM, AMP and DAMP on digits and compare them",
                       description="Trains each method on the embedded digits into OUT/<method>/ (finished runs are "
                                   "reused, interrupted ones resumed), analyses each (OUT/<method>/surface_2d.h5, "
                                   "hessian.h5, sweep.h5) and prints a comparison table.",
                       epilog="examples:\n  landscape demo --out runs/demo\n  landscape demo --out runs/demo --epochs 5 "
                              "--methods erm,sam", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="folder of the demo runs [%(default)s]")
    p.add_argument("--epochs", type=int, default=15, help="[%(default)s]")
    p.add_argument("--methods", default=",".join(DEMO_METHODS), help="comma-separated [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    p.add_argument("--surface-steps", type=int, default=15, help="2-D surface grid per method is N x N over [-1, 1] [%(default)s]")
    p.add_argument("--surface-samples", type=int, default=500, help="training images evaluated per grid point [%(default)s]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def comparison_table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| method | test error (%) | test NLL | test ECE | train time (s) | top Hessian eigenvalue | Hessian trace | "
             f"SAM sharpness (rho={SHARPNESS_RHO}) | surface: mean train loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, m in rows:
        lines.append(f"| {method} | {m['test_error']:.2f} | {m['test_nll']:.4f} | {m['test_ece']:.4f} | "
                     f"{m['train_seconds']:.1f} | {m['lambda_max']:.3f} | {m['trace']:.2f} | {m['sharpness']:.4f} | "
                     f"{m['surface_mean']:.3f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    base = TrainConfig(model="small_cnn", dataset="digits", epochs=args.epochs, seed=args.seed, device="cpu")
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        run_dir = out / method
        cfg = replace(base, method=method)
        if (run_dir / "final.pt").is_file() and read_checkpoint(run_dir / "final.pt")["config"]["epochs"] == args.epochs:
            print(f"[demo] {method}: reusing finished run {run_dir}")
        else:
            print(f"[demo] training {method} -> {run_dir}")
            train(cfg, run_dir, resume=newest_checkpoint(run_dir) is not None or (run_dir / "config.json").exists(),
                  progress=not args.no_progress)
        history = read_checkpoint(run_dir / "final.pt")["metrics"]
        surface = run_dir / "surface_2d.h5"
        print(f"[demo] {method}: 2-D loss surface ({args.surface_steps}x{args.surface_steps}) -> {surface}")
        xs = np.linspace(-1, 1, args.surface_steps)
        opts = EvalOptions(splits=["train", "test"], samples=args.surface_samples, device="cpu", progress=not args.no_progress)
        random_surface(run_dir / "final.pt", surface, xs, xs, opts, seed=args.seed, resume=True)
        grid = read_surface(surface).values["train_loss"]
        analysis = EvalOptions(splits=["train"], samples=args.surface_samples, device="cpu", progress=not args.no_progress)
        hess = run_dir / "hessian.h5"
        if not hess.exists():
            print(f"[demo] {method}: Hessian top-5 eigenvalues and trace -> {hess}")
            hessian_analysis(run_dir / "final.pt", hess, analysis, top_k=5, trace_matvecs=30, seed=args.seed)
        h = read_analysis(hess, "hessian")[1]
        sweep = run_dir / "sweep.h5"
        print(f"[demo] {method}: loss vs perturbation radius (4 kinds) -> {sweep}")
        sweep_analysis(run_dir / "final.pt", sweep, SWEEP_RADII, analysis, kinds=["random", "adversarial", "multiplicative",
                       "adaptive"], settings=SweepSettings(trials=3, steps=5, seed=args.seed), resume=True)
        sw = read_sweep(sweep)
        at = int(np.argmin(np.abs(sw.radii - SHARPNESS_RHO)))
        rows.append((method, {**history[-1], "train_seconds": sum(h["seconds"] for h in history),
                              "surface_mean": float(np.mean(grid)), "lambda_max": float(h["eigenvalues"][0]),
                              "trace": float(h["trace"]),
                              "sharpness": float(sw.curve("adversarial")[at] - sw.curve("adversarial")[0])}))
    table = comparison_table(rows)
    note = (f"Surface: filter-normalized random directions (seed {args.seed}), {args.surface_steps}x{args.surface_steps} "
            f"grid over [-1, 1]^2. Hessian (Lanczos, residual <= 1e-3 |lambda|; Hutch++ trace, 30 products), sweeps "
            f"and sharpness (worst loss increase in the L2 ball of radius {SHARPNESS_RHO}) use the same "
            f"{args.surface_samples} training images.")
    atomic_write(out / "comparison.md",
                 lambda tmp: tmp.write_text(f"# Demo: digits, small_cnn, {args.epochs} epochs\n\n{table}\n\n{note}\n"))
    print(f"\n{table}\n\n[demo] table written to {out / 'comparison.md'}")
    return 0
