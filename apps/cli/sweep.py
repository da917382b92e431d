"""``landscape sweep``: loss against perturbation size (random, adversarial, multiplicative, adaptive)."""

from __future__ import annotations

import argparse

from landscape.surfaces import parse_range
from landscape.sweeps import DEFAULT_KINDS, SWEEP_KINDS, SweepSettings, sweep

from .commands import help_of
from .numbers import COUNT, INDEX, NONNEGATIVE
from .problem import problem_from_args
from .surface import (
    add_eval_args,
    check_output,
    eval_options,
    is_main_process,
    split_list,
)

EXAMPLES = """examples:
  landscape sweep runs/sam/final.pt --radii 0:1:21 --samples 1000 --out sam_sweep.h5
  landscape sweep --problem my_problem.py:problem --radii 0:0.5:11 --out mine_sweep.h5     # your own model
  landscape sweep runs/sam/final.pt --kind adversarial,adaptive --radii 0:0.2:11 --steps 20 --out sam_adv.h5
  landscape sweep runs/sam/final.pt --kind adversarial,apgd --radii 0:0.2:5 --steps 50 --trials 3 --out sam_apgd.h5
  landscape sweep runs/sam/final.pt --kind random --normalize filter --trials 10 --radii 0:1:11 --out sam_rand.h5
  landscape sweep runs/sam/final.pt --radii 0:1:21 --out sam_sweep.h5 --resume      # after an interruption

Kinds: random (Gaussian direction of global norm r; --normalize filter: the filter-normalized
direction times r), adversarial (worst delta in the L2 ball of radius r by projected gradient
ascent, SAM/AMP's inner problem), multiplicative (w * (1 + r xi) on weights, DAMP's family),
adaptive (worst delta = (|w| + eta) z with ||z|| <= r, ASAM's ball), apgd (the worst delta in
the L2 ball by Auto-PGD with --trials restarts: a far tighter bound than adversarial). Sharpness at rho is the
sweep's loss at r = rho minus the loss at r = 0 (printed for every radius)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help=help_of("sweep"),
        description="Loss and accuracy of a checkpoint under perturbations of growing size.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint of landscape train (or --problem)")
    p.add_argument(
        "--kind", default=",".join(DEFAULT_KINDS), help=f"comma-separated, of {','.join(SWEEP_KINDS)} [%(default)s]"
    )
    p.add_argument("--radii", default="0:1:11", help="MIN:MAX:NUM [%(default)s]")
    d = SweepSettings()
    p.add_argument(
        "--trials",
        type=COUNT,
        default=d.trials,
        help="random draws per radius (random, multiplicative); restarts (apgd) [%(default)s]",
    )
    p.add_argument(
        "--steps", type=COUNT, default=d.steps, help="ascent steps (adversarial, adaptive, apgd) [%(default)s]"
    )
    p.add_argument(
        "--normalize", choices=("none", "filter"), default=d.normalize, help="random directions [%(default)s]"
    )
    p.add_argument("--eta", type=NONNEGATIVE, default=d.eta, help="adaptive ball: T = |w| + eta [%(default)s]")
    p.add_argument("--seed", type=INDEX, default=d.seed, help="[%(default)s]")
    add_eval_args(p, problem=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape._jobs import sweep_analysis
    from landscape.io import read_sweep

    if args.format != "landscape" or args.bn != "eval" or args.compile or args.plain_forward:
        raise ValueError("sweep takes none of --format, --bn recompute, --compile, --plain-forward")
    check_output(args)
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    radii = parse_range(args.radii, "--radii")
    if radii.min() < 0:
        raise ValueError("--radii must be >= 0")
    if args.trials < 1 or args.steps < 1:
        raise ValueError(f"--trials and --steps must be >= 1, got {args.trials}, {args.steps}")
    if not args.eta >= 0:
        raise ValueError(f"--eta must be >= 0, got {args.eta}")
    settings = SweepSettings(
        trials=args.trials, steps=args.steps, normalize=args.normalize, eta=args.eta, seed=args.seed
    )
    problem = problem_from_args(args)
    if problem is not None:
        splits = split_list(args.split)
        sweep(
            problem,
            radii,
            kinds=kinds,
            trials=args.trials,
            steps=args.steps,
            normalize=args.normalize,
            eta=args.eta,
            seed=args.seed,
            split=splits[0] if splits else None,
            out=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            log=print,
        )
    else:
        sweep_analysis(
            args.checkpoint,
            args.out,
            radii,
            eval_options(args),
            kinds=kinds,
            settings=settings,
            resume=args.resume,
            overwrite=args.overwrite,
            log=print,
        )
    if not is_main_process():  # rank 0 wrote the file and reports
        return 0
    out = args.out
    sw = read_sweep(out)
    print("radius  " + "  ".join(f"{k:>14s}" for k in sw.kinds) + "   (mean loss; sharpness = loss - loss at 0)")
    for j, r in enumerate(sw.radii):
        print(f"{r:6.3g}  " + "  ".join(f"{sw.curve(k)[j]:14.6g}" for k in sw.kinds))
    print(f"wrote {out}")
    return 0
