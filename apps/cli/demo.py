"""``landscape demo``: the main job on the embedded digits, end to end."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from landscape._jobs import (
    EvalOptions,
    calibration,
    connectivity_analysis,
    hessian_analysis,
    random_surface,
    robustness_analysis,
    sweep_analysis,
)
from landscape.apps.cli.explore import serve
from landscape.report import (
    SHARPNESS_RHO,
    columns,
    connectivity_table,
    grouped_table,
    markdown_table,
    write_report,
)
from landscape.runs import find_runs
from landscape.sweeps import SweepSettings
from landscape.trainers import METHODS, read_checkpoint
from landscape.trainers.rundir import CONFIG, FINAL, SWA, newest_checkpoint
from landscape.trainers.train import TrainConfig, train

from .commands import help_of
from .numbers import COUNT, PORT, names, number
from .robustness import add_corruption_args
from .train import seed_list

DEMO_METHODS = ("erm", "sam", "asam", "amp", "damp", "swa")
SWA_LR = 0.05  # "swa": ERM with stochastic weight averaging over the last quarter of the epochs at this constant lr
SWEEP_RADII = np.linspace(0, 0.5, 6)


CONNECTED = ("erm", "sam")  # the groups whose pairs of seeds get barriers and curves
CURVE_EPOCHS = 5


def seed_pairs(seeds: list[int]) -> list[tuple[int, int]]:
    """Pairs of seeds whose minima are connected: each seed with the next, in a ring from three seeds on."""
    if len(seeds) < 2:
        return []
    return list(zip(seeds, seeds[1:] + seeds[:1])) if len(seeds) > 2 else [(seeds[0], seeds[1])]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help=help_of("demo"),
        description="Trains each method (and swa: ERM with stochastic weight averaging over the last quarter of the "
        "epochs) on the embedded digits for every seed into OUT/<method>/seed<N>/ "
        "(finished runs are reused, interrupted ones resumed), analyses every seed (hessian.h5, "
        "sweep.h5, robustness.h5 against ERM of the same seed) and the first seed's 2-D "
        "surface (surface_2d.h5), writes a comparison report of the groups, mean +- std over "
        "seeds and paired differences against ERM (OUT/report/report.md and report.html), "
        "and serves the explorer over OUT (--no-serve skips that).",
        epilog="examples:\n  landscape demo --out runs/demo\n  landscape demo --out runs/demo --epochs 5 "
        "--methods erm,sam --seeds 0 --no-serve\n  landscape explore runs/demo      "
        "# the explorer over a finished demo, later",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", help="folder of the demo runs [%(default)s]")
    p.add_argument("--epochs", type=COUNT, default=15, help="[%(default)s]")
    p.add_argument(
        "--methods",
        type=names((*METHODS, "swa")),
        default=list(DEMO_METHODS),
        help=f"comma-separated [{','.join(DEMO_METHODS)}]",
    )
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=[0, 1, 2],
        metavar="LIST",
        help="seeds of every method, e.g. 0,1,2 or 0-4 [0-2]",
    )
    p.add_argument(
        "--surface-steps",
        type=number(int, least=2),
        default=15,
        help="2-D surface grid per method is N x N over [-1, 1] [%(default)s]",
    )
    p.add_argument(
        "--surface-samples", type=COUNT, default=500, help="training images evaluated per grid point [%(default)s]"
    )
    add_corruption_args(p, "robustness: ")
    p.add_argument(
        "--no-connectivity",
        action="store_true",
        help=f"skip the barriers and curves between pairs of seeds of {' and '.join(CONNECTED)}",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-serve", action="store_true", help="end after the report instead of serving the explorer")
    p.add_argument("--port", type=PORT, default=8050, help="the explorer's port (on 127.0.0.1) [%(default)s]")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    base = TrainConfig(model="small_cnn", dataset="digits", epochs=args.epochs, device="cpu")
    methods, corruptions, severities = args.methods, args.corruptions, args.severities
    progress = not args.no_progress
    analysis = EvalOptions(splits=["train"], samples=args.surface_samples, device="cpu", progress=progress)
    for seed in args.seeds:
        for method in methods:
            run_dir = out / method / f"seed{seed}"
            tag = f"{method} seed {seed}"
            cfg = replace(base, method=method, seed=seed)
            if method == "swa":  # Izmailov et al.: SGD, then the mean of the weights of the last epochs
                cfg = replace(cfg, method="erm", swa_start=max(1, args.epochs - args.epochs // 4), swa_lr=SWA_LR)
            if (run_dir / FINAL).is_file() and read_checkpoint(run_dir / FINAL)["config"]["epochs"] == args.epochs:
                print(f"[demo] {tag}: reusing finished run {run_dir}")
            else:
                print(f"[demo] training {tag} -> {run_dir}")
                train(
                    cfg,
                    run_dir,
                    resume=newest_checkpoint(run_dir) is not None or (run_dir / CONFIG).exists(),
                    progress=progress,
                )
            final = run_dir / (SWA if method == "swa" else FINAL)  # the averaged model is what SWA produces
            if seed == args.seeds[0]:  # one surface per method: the picture, not a number compared over seeds
                surface = run_dir / "surface_2d.h5"
                print(f"[demo] {tag}: 2-D loss surface ({args.surface_steps}x{args.surface_steps}) -> {surface}")
                xs = np.linspace(-1, 1, args.surface_steps)
                random_surface(
                    final,
                    surface,
                    xs,
                    xs,
                    EvalOptions(
                        splits=["train", "test"], samples=args.surface_samples, device="cpu", progress=progress
                    ),
                    seed=seed,
                    resume=True,
                )
            hess = run_dir / "hessian.h5"
            if not hess.exists():
                print(f"[demo] {tag}: Hessian top-5 eigenvalues and trace -> {hess}")
                hessian_analysis(final, hess, analysis, top_k=5, trace_matvecs=30, seed=seed)
            sweep = run_dir / "sweep.h5"
            print(f"[demo] {tag}: loss vs perturbation radius (4 kinds) -> {sweep}")
            sweep_analysis(
                final,
                sweep,
                SWEEP_RADII,
                analysis,
                kinds=["random", "adversarial", "multiplicative", "adaptive"],
                settings=SweepSettings(trials=3, steps=5, seed=seed),
                resume=True,
            )
            robustness = run_dir / "robustness.h5"
            baseline = out / "erm" / f"seed{seed}" / FINAL
            print(
                f"[demo] {tag}: test error under {len(corruptions)} corruptions x {len(severities)} severities"
                f"{' against ERM' if baseline.is_file() else ''} -> {robustness}"
            )
            robustness_analysis(
                final,
                robustness,
                corruptions,
                severities,
                EvalOptions(device="cpu", progress=progress),
                baseline=baseline if baseline.is_file() else None,
                seed=seed,
                resume=True,
            )
    pairs = seed_pairs(args.seeds)
    for method in [m for m in CONNECTED if m in methods and not args.no_connectivity]:
        for a, b in pairs:
            run_a = out / method / f"seed{a}"
            print(f"[demo] {method} seeds {a} -> {b}: loss barrier on the line, the aligned line, a curve -> {run_a}")
            connectivity_analysis(
                run_a / FINAL,
                out / method / f"seed{b}" / FINAL,
                run_a,
                EvalOptions(
                    splits=["train", "test"], samples=args.surface_samples, batch_size=128, device="cpu",
                    progress=progress,
                ),
                name=f"seed{b}",
                curve_epochs=CURVE_EPOCHS,
            )  # fmt: skip
    runs = find_runs([out / m / f"seed{s}" for m in methods for s in args.seeds])
    curves = {r.name: calibration(r.checkpoint, EvalOptions(device="cpu", progress=False))[1] for r in runs}
    seeds = ", ".join(map(str, args.seeds))
    intro = (
        f"Demo: `small_cnn` on the embedded digits, {args.epochs} epochs, seeds {seeds}; every number is the mean ± "
        f"std over the seeds. Surfaces (the first seed's): filter-normalized random directions, "
        f"{args.surface_steps}x{args.surface_steps} grid over [-1, 1]^2; the Hessian (Lanczos top-5, Hutch++ trace "
        f"with 30 products), sweeps and sharpness use the same {args.surface_samples} training images. Robustness: "
        f"the 360 test images under {len(corruptions)} corruptions of imagecorruptions at severities "
        f"{args.severities} (8x8 digits upsampled to 32x32, corrupted, averaged back), CE relative to ERM of the "
        f"same seed."
    )
    report = write_report(runs, out / "report", rho=SHARPNESS_RHO, calibration=curves, intro=intro)
    summary = json.loads((report / "summary.json").read_text())
    tables = connectivity_table(summary["connectivity"])
    links = "".join(f"\n{title}\n\n{markdown_table(h, b)}\n" for title, h, b in tables)
    print(
        f"\n{markdown_table(*grouped_table(summary['groups'], columns(SHARPNESS_RHO)))}\n{links}\n"
        f"(mean ± std over seeds {seeds}; per-seed rows and paired differences against ERM are in the report)\n"
        f"[demo] comparison report: {report / 'report.md'} and {report / 'report.html'} (open it in a browser)"
    )
    if args.no_serve:
        print(f"[demo] to browse the runs later: .venv/bin/landscape explore {out}  (then open http://127.0.0.1:8050/)")
    else:
        print(
            f"[demo] serving the explorer over {out}; open http://127.0.0.1:{args.port}/ (Ctrl-C ends the demo; "
            f"later: .venv/bin/landscape explore {out})"
        )
        serve(str(out), port=args.port)
    return 0
