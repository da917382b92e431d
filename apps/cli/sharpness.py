"""``landscape sharpness``: the sharpness suite on one model (Auto-PGD worst case, average case, adaptive, L∞,
m-sharpness, Keskar's, Fisher-Rao, PAC-Bayes), one line per measure with its spread and cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from landscape.flatness import DEFAULT_MEASURES

from .commands import help_of
from .numbers import COUNT, INDEX, POSITIVE
from .problem import problem_from_args
from .surface import add_eval_args, eval_options, is_main_process, split_list

EXAMPLES = """examples:
  landscape sharpness runs/sam/seed0/final.pt --samples 1000
  landscape sharpness runs/sam/seed0/final.pt --measures apgd,apgd_linf@0.002,average_adaptive@0.5 --restarts 3
  landscape sharpness runs/sam/seed0/final.pt --measures sam_m128,apgd_m128 --steps 20      # m-sharpness, m = 128
  landscape sharpness runs/sam/seed0/final.pt --out runs/sam/seed0/sharpness.json          # read by compare
  landscape sharpness --problem my_problem.py:problem --measures apgd,fisher_rao,pacbayes

A measure is KIND[_linf][_adaptive][_mM][@RHO]. Kinds: sam (projected gradient ascent, --steps),
apgd (Auto-PGD with --restarts), average (random points of the ball's boundary, --trials), adaptive
(ASAM's ball), keskar (Keskar et al.'s epsilon-sharpness, in percent), fisher_rao (Jiang et al.'s
Fisher-Rao measure), pacbayes (1/sigma^2, sigma the noise level that moves the training error by
0.1). _linf: the L-infinity ball; _adaptive: the ball scaled by |w| (rescaling-invariant); _mM: the
measure on blocks of M examples, averaged (m-sharpness). Definitions: README, "Sharpness measures"."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sharpness",
        help=help_of("sharpness"),
        description="Sharpness of a checkpoint by each definition of the literature, with its spread and cost.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint of landscape train (or --problem)")
    p.add_argument("--measures", default=",".join(DEFAULT_MEASURES), help="comma-separated [%(default)s]")
    p.add_argument("--rho", type=POSITIVE, default=0.1, help="radius of the measures that name none [%(default)s]")
    p.add_argument("--steps", type=COUNT, default=20, help="ascent steps (sam, apgd, keskar) [%(default)s]")
    p.add_argument("--restarts", type=COUNT, default=1, help="Auto-PGD restarts (apgd, keskar) [%(default)s]")
    p.add_argument("--trials", type=COUNT, default=5, help="random draws (average, pacbayes) [%(default)s]")
    p.add_argument("--seed", type=INDEX, default=0, help="[%(default)s]")
    p.add_argument("--out", default=None, help="also write the results to this JSON file (e.g. RUN/sharpness.json)")
    add_eval_args(p, problem=True, output=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape._jobs import checkpoint_problem, process_device
    from landscape._system.files import write_json
    from landscape.flatness import parse_measure, suite

    if args.bn != "eval" or args.compile:
        raise ValueError("sharpness takes neither --bn recompute nor --compile")
    measures = [m for m in args.measures.split(",") if m.strip()]
    for m in measures:
        parse_measure(m, args.rho)  # every name checked before any work
    if args.out is not None and Path(args.out).is_dir():
        example = Path(args.out) / "sharpness.json"
        raise IsADirectoryError(f"--out {args.out} is a folder: give the file to write, e.g. {example}")
    problem = problem_from_args(args)
    if problem is None:
        opts = eval_options(args)
        problem = checkpoint_problem(args.checkpoint, opts, process_device(opts.device))
    splits = split_list(args.split)
    found = suite(
        problem,
        measures,
        rho=args.rho,
        steps=args.steps,
        restarts=args.restarts,
        trials=args.trials,
        seed=args.seed,
        split=splits[0] if splits else None,
        fast=not args.plain_forward,
        log=None if args.no_progress else print,
    )
    if not is_main_process():
        return 0
    print(f"{'measure':<28s} {'value':>12s} {'spread':>10s} {'passes':>7s} {'seconds':>8s}")
    for name, s in found.items():
        print(f"{name:<28s} {float(s):12.6g} {s.std:10.3g} {s.evaluations:7d} {s.seconds:8.1f}")
    if args.out is not None:
        write_json(Path(args.out), {"measures": {name: s.as_dict() for name, s in found.items()}})
        print(f"wrote {args.out}")
    return 0
