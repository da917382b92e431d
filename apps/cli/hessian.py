"""``landscape hessian``: top eigenvalues, trace and spectral density of a checkpoint's loss."""

from __future__ import annotations

import argparse

import numpy as np

from .commands import help_of
from .numbers import COUNT, INDEX, number
from .problem import problem_from_args
from .surface import (
    add_eval_args,
    check_output,
    eval_options,
    is_main_process,
    split_list,
)

EXAMPLES = """examples:
  landscape hessian runs/sam/final.pt --top-k 5 --samples 1000 --out sam_hessian.h5
  landscape hessian --problem my_problem.py:problem --top-k 5 --trace --out mine_hessian.h5     # your own model
  landscape hessian runs/sam/final.pt --top-k 2 --which smallest --out sam_negative.h5
  landscape hessian runs/sam/final.pt --top-k 1 --trace --density --out sam_spectrum.h5
  landscape hessian runs/sam/final.pt --curvature ggn --top-k 5 --out sam_ggn.h5
  landscape hessian runs/sam/final.pt --top-k 1 --per-batch 20 --per-batch-size 64 --out sam_batches.h5
  landscape hessian runs/sam/final.pt --top-k 5 --trace --density --out sam_spectrum.h5 --resume   # after a kill
  landscape surface runs/sam/final.pt --directions hessian --hessian sam_hessian.h5 --x -1:1:21 --y -1:1:21 --out h.h5

Eigenpairs come from Lanczos with full reorthogonalization, stopped when every residual
||Hv - lambda v|| <= tol * |lambda| (the residuals are stored). The loss is the mean
cross-entropy over the first --split (BatchNorm in eval mode); with --problem, the problem's
loss over its first split (or --split). The file is written after each finished stage
(eigenpairs, trace, density): --resume finishes a killed job without redoing those."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hessian",
        help=help_of("hessian"),
        description="Curvature of a checkpoint's loss: top-k eigenpairs (Lanczos), trace (Hutch++), "
        "spectral density (stochastic Lanczos quadrature).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint of landscape train (or --problem)")
    p.add_argument("--top-k", type=INDEX, default=5, help="eigenpairs to compute (0: none) [%(default)s]")
    p.add_argument("--which", choices=("largest", "smallest"), default="largest", help="[%(default)s]")
    p.add_argument(
        "--tol", type=number(float, above=0, most=1), default=1e-3, help="relative residual to stop at [%(default)s]"
    )
    p.add_argument(
        "--trace",
        type=INDEX,
        nargs="?",
        const=99,
        default=0,
        metavar="MATVECS",
        help="estimate the trace with MATVECS products (99 if given alone)",
    )
    p.add_argument("--trace-method", choices=("hutch++", "hutchinson"), default=None, help="with --trace [hutch++]")
    p.add_argument("--density", action="store_true", help="spectral density by stochastic Lanczos quadrature")
    p.add_argument("--density-probes", type=COUNT, default=None, help="with --density [10]")
    p.add_argument("--density-steps", type=number(int, least=2), default=None, help="with --density [80]")
    p.add_argument(
        "--curvature",
        choices=("hessian", "ggn"),
        default="hessian",
        help="the Hessian, or the (PSD) generalized Gauss-Newton matrix [%(default)s]",
    )
    p.add_argument(
        "--per-batch",
        type=INDEX,
        default=0,
        metavar="B",
        help="also the top eigenvalue on each of B batches of --per-batch-size examples (a histogram) [off]",
    )
    p.add_argument("--per-batch-size", type=COUNT, default=128, help="examples per batch of --per-batch [%(default)s]")
    p.add_argument("--seed", type=INDEX, default=0, help="start/probe vectors [%(default)s]")
    add_eval_args(p, problem=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape._jobs import hessian_analysis
    from landscape.curvature import hessian
    from landscape.io.results import read_analysis

    if args.format != "landscape" or args.bn != "eval" or args.compile or args.plain_forward:
        raise ValueError("hessian takes none of --format, --bn recompute, --compile, --plain-forward")
    check_output(args)
    if args.trace_method is not None and not args.trace:
        raise ValueError("--trace-method chooses the estimator of --trace: add --trace")
    if (args.density_probes or args.density_steps) and not args.density:
        raise ValueError("--density-probes and --density-steps set the spectral density: add --density")
    settings = dict(
        top_k=args.top_k,
        which=args.which,
        tol=args.tol,
        trace_method=args.trace_method or "hutch++",
        density=args.density,
        density_probes=args.density_probes or 10,
        density_steps=args.density_steps or 80,
        curvature=args.curvature,
        batches=args.per_batch,
        batch_size=args.per_batch_size,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        log=print,
    )
    problem = problem_from_args(args)
    if problem is not None:
        splits = split_list(args.split)
        hessian(
            problem,
            trace=args.trace,
            split=splits[0] if splits else None,
            out=args.out,
            progress=not args.no_progress,
            **settings,
        )
    else:
        hessian_analysis(args.checkpoint, args.out, eval_options(args), trace_matvecs=args.trace, **settings)
    if not is_main_process():  # rank 0 wrote the file and reports
        return 0
    out = args.out
    attrs, arrays = read_analysis(out, "hessian")
    if "eigenvalues" in arrays:
        pairs = ", ".join(f"{v:.6g} (residual {r:.1e})" for v, r in zip(arrays["eigenvalues"], arrays["residuals"]))
        print(f"{args.which} eigenvalues: {pairs}; {int(arrays['eigen_matvecs'])} products")
    if "trace" in arrays:
        lo, hi = np.asarray(arrays["trace_ci95"])
        print(
            f"trace: {float(arrays['trace']):.6g} (95% CI {lo:.6g} .. {hi:.6g}); "
            f"{int(arrays['trace_matvecs'])} products"
        )
    if "batch_eigenvalues" in arrays:
        b = arrays["batch_eigenvalues"]
        print(
            f"per batch of {attrs['batch_size']}: top eigenvalue {b.mean():.6g} ± {b.std():.3g} over {len(b)} batches "
            f"(min {b.min():.6g}, max {b.max():.6g}); {int(arrays['batch_matvecs'])} products"
        )
    if "density" in arrays:
        print(
            f"density: {len(arrays['density_grid'])} grid points over [{arrays['density_grid'][0]:.4g}, "
            f"{arrays['density_grid'][-1]:.4g}]; {int(arrays['density_matvecs'])} products"
        )
    print(f"wrote {out} ({attrs['num_params']} parameters, {attrs['curvature']})")
    return 0
