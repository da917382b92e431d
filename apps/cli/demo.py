"""``landscape demo``: the main job on the embedded digits, end to end."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from apps.cli.explore import serve
from data.corruptions import parse_corruptions, parse_severities
from landscape.jobs import (
    EvalOptions,
    calibration,
    hessian_analysis,
    random_surface,
    robustness_analysis,
    sweep_analysis,
)
from landscape.perturbation import SweepSettings
from landscape.report import (
    columns,
    find_runs,
    markdown_table,
    summary_row,
    summary_table,
    write_report,
)
from trainers import TrainConfig, read_checkpoint, train
from trainers.train import newest_checkpoint

from .numbers import COUNT, INDEX, PORT, number

DEMO_METHODS = ("erm", "sam", "asam", "amp", "damp")
SWEEP_RADII = np.linspace(0, 0.5, 6)
SHARPNESS_RHO = 0.1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train ERM, SAM, ASAM, AMP and DAMP on digits and compare them",
                       description="Trains each method on the embedded digits into OUT/<method>/ (finished runs are "
                                   "reused, interrupted ones resumed), analyses each (OUT/<method>/surface_2d.h5, "
                                   "hessian.h5, sweep.h5, robustness.h5 against ERM), writes a comparison report (OUT/report/report.md and report.html) "
                                   "and serves the explorer over OUT (--no-serve skips that).",
                       epilog="examples:\n  landscape demo --out runs/demo\n  landscape demo --out runs/demo --epochs 5 "
                              "--methods erm,sam --no-serve", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="folder of the demo runs [%(default)s]")
    p.add_argument("--epochs", type=COUNT, default=15, help="[%(default)s]")
    p.add_argument("--methods", default=",".join(DEMO_METHODS), help="comma-separated [%(default)s]")
    p.add_argument("--seed", type=INDEX, default=0, help="[%(default)s]")
    p.add_argument("--surface-steps", type=number(int, least=2), default=15, help="2-D surface grid per method is N x N over [-1, 1] [%(default)s]")
    p.add_argument("--surface-samples", type=COUNT, default=500, help="training images evaluated per grid point [%(default)s]")
    p.add_argument("--corruptions", default="all", help="robustness: corruptions evaluated [%(default)s]")
    p.add_argument("--severities", default="1-5", help="robustness: severities [%(default)s]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-serve", action="store_true", help="end after the report instead of serving the explorer")
    p.add_argument("--port", type=PORT, default=8050, help="the explorer's port (on 127.0.0.1) [%(default)s]")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    base = TrainConfig(model="small_cnn", dataset="digits", epochs=args.epochs, seed=args.seed, device="cpu")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    corruptions, severities = parse_corruptions(args.corruptions), parse_severities(args.severities)
    for method in methods:
        run_dir = out / method
        cfg = replace(base, method=method)
        if (run_dir / "final.pt").is_file() and read_checkpoint(run_dir / "final.pt")["config"]["epochs"] == args.epochs:
            print(f"[demo] {method}: reusing finished run {run_dir}")
        else:
            print(f"[demo] training {method} -> {run_dir}")
            train(cfg, run_dir, resume=newest_checkpoint(run_dir) is not None or (run_dir / "config.json").exists(),
                  progress=not args.no_progress)
        surface = run_dir / "surface_2d.h5"
        print(f"[demo] {method}: 2-D loss surface ({args.surface_steps}x{args.surface_steps}) -> {surface}")
        xs = np.linspace(-1, 1, args.surface_steps)
        opts = EvalOptions(splits=["train", "test"], samples=args.surface_samples, device="cpu", progress=not args.no_progress)
        random_surface(run_dir / "final.pt", surface, xs, xs, opts, seed=args.seed, resume=True)
        analysis = EvalOptions(splits=["train"], samples=args.surface_samples, device="cpu", progress=not args.no_progress)
        hess = run_dir / "hessian.h5"
        if not hess.exists():
            print(f"[demo] {method}: Hessian top-5 eigenvalues and trace -> {hess}")
            hessian_analysis(run_dir / "final.pt", hess, analysis, top_k=5, trace_matvecs=30, seed=args.seed)
        sweep = run_dir / "sweep.h5"
        print(f"[demo] {method}: loss vs perturbation radius (4 kinds) -> {sweep}")
        sweep_analysis(run_dir / "final.pt", sweep, SWEEP_RADII, analysis, kinds=["random", "adversarial", "multiplicative",
                       "adaptive"], settings=SweepSettings(trials=3, steps=5, seed=args.seed), resume=True)
        robustness = run_dir / "robustness.h5"
        baseline = out / "erm" / "final.pt"
        print(f"[demo] {method}: test error under {len(corruptions)} corruptions x {len(severities)} severities"
              f"{' against ERM' if baseline.is_file() else ''} -> {robustness}")
        robustness_analysis(run_dir / "final.pt", robustness, corruptions, severities,
                            EvalOptions(device="cpu", progress=not args.no_progress),
                            baseline=baseline if baseline.is_file() else None, seed=args.seed,
                            resume=True)
    runs = find_runs([out / m for m in methods])
    curves = {r.name: calibration(r.checkpoint, EvalOptions(device="cpu", progress=False))[1] for r in runs}
    intro = (f"Demo: `small_cnn` on the embedded digits, {args.epochs} epochs, seed {args.seed}. Surfaces: filter-normalized "
             f"random directions (seed {args.seed}), {args.surface_steps}x{args.surface_steps} grid over [-1, 1]^2; the "
             f"Hessian (Lanczos top-5, Hutch++ trace with 30 products), sweeps and sharpness use the same "
             f"{args.surface_samples} training images. Robustness: the 360 test images under {len(corruptions)} "
             f"corruptions of imagecorruptions at severities {args.severities} (8x8 digits upsampled to 32x32, corrupted, averaged back), "
             f"CE relative to ERM.")
    report = write_report(runs, out / "report", rho=SHARPNESS_RHO, calibration=curves, intro=intro)
    table = summary_table([summary_row(r, SHARPNESS_RHO) for r in runs], columns(SHARPNESS_RHO))
    print(f"\n{markdown_table(*table)}\n\n"
          f"[demo] comparison report: {report / 'report.md'} and {report / 'report.html'} (open it in a browser)")
    if not args.no_serve:
        print(f"[demo] serving the explorer over {out}; open http://127.0.0.1:{args.port}/ (Ctrl-C ends the demo)")
        serve(str(out), port=args.port)
    return 0
