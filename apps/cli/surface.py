"""``landscape surface | interpolate | trajectory``: loss surfaces of checkpoints, written to HDF5."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from landscape.directions import DIR_TYPES, IGNORES, NORMS
from landscape.surfaces import BN_MODES, parse_range, surface

if TYPE_CHECKING:
    from landscape._jobs import EvalOptions

from .commands import help_of
from .numbers import COUNT, INDEX, POSITIVE, checked, number
from .problem import problem_from_args

SURFACE_EXAMPLES = """examples:
  landscape surface runs/sam/final.pt --x -1:1:51 --out sam_1d.h5
  landscape surface --problem my_problem.py:problem --x -1:1:21 --y -1:1:21 --out mine_2d.h5     # your own model
  landscape surface runs/sam/final.pt --x -1:1:21 --y -1:1:21 --split train,test --samples 500 --out sam_2d.h5
  landscape surface runs/sam/final.pt --x -1:1:21 --y -1:1:21 --out sam_2d.h5 --resume     # after an interruption
  torchrun --nproc_per_node=2 -m landscape.apps.cli surface runs/sam/final.pt --x -1:1:51 --y -1:1:51 --out big.h5
  landscape surface runs/sam/final.pt --x -1:1:21 --y -1:1:21 --format loss-landscape --out theirs.h5
  landscape surface runs/sam/final.pt --x -1:1:101 --y -1:1:101 --compile --out fine.h5   # compile from the start
  landscape surface runs/sam/final.pt --x -1:1:21 --direction-seeds 5 --out sam_bands.h5   # mean +- std over 5 pairs
  landscape surface runs/sam/final.pt --x -1:1:65 --y -1:1:65 --refine 0.05 --out sam_fast.h5  # ~5x fewer points
  landscape surface runs/sam/final.pt --x -1:1:21 --samples 500 --bootstrap 10 --out sam_500.h5  # enough data?

Directions are Gaussian, filter-normalized with biases/BN zeroed (Li et al. 2018; loss-landscape's
--xnorm filter --xignore biasbn), from a generator seeded with --seed. 2-D arrays are stored as
(ny, nx) with Z[i, j] at (x[j], y[i]); accuracies are in percent. The model is evaluated with eval
BatchNorm folded into its convolutions (channels-last on CPU), and compiled once a grid proves long
(see --compile, --plain-forward)."""


def add_eval_args(
    p: argparse.ArgumentParser,
    *,
    problem: bool = False,
    bn: tuple[str, ...] = BN_MODES,
    bn_default: str = "eval",
    output: bool = True,
) -> None:
    """Options of the data a checkpoint is evaluated on, and of the output file (``output``: an HDF5 result);
    ``problem`` adds ``--problem``, ``bn`` and ``bn_default`` are the BatchNorm modes offered."""
    g = p.add_argument_group("evaluation")
    if problem:
        g.add_argument(
            "--problem",
            metavar="FILE.py:NAME",
            default=None,
            help="instead of a checkpoint: your own landscape.Problem (or a zero-argument function returning "
            "one) named NAME in FILE.py or in an importable module (runs that file's code)",
        )
    g.add_argument(
        "--split",
        type=checked(split_list),
        default=None,
        help="train, test or train,test [train; with --problem: its splits]",
    )
    g.add_argument(
        "--samples", type=COUNT, default=None, help="a fixed seeded subset of N images per split (default: all)"
    )
    g.add_argument("--sample-seed", type=INDEX, default=None, help="seed of that subset [0]")
    g.add_argument("--batch-size", type=COUNT, default=None, help="evaluation batch [1000]")
    g.add_argument(
        "--bn",
        choices=bn,
        default=bn_default,
        help="BatchNorm at each point: the running statistics (eval), or statistics recomputed on the training data "
        "at every point (recompute)"
        + (", also every hidden unit's (repair)" if "repair" in bn else "")
        + " [%(default)s]",
    )
    g.add_argument("--device", default=None, help="auto, cpu or cuda [auto]")
    g.add_argument(
        "--data-root", default=None, help="dataset folder (default: the one the checkpoint was trained with)"
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the evaluation from the start (--compile), never (--no-compile), or, by default, once the "
        "first points show that the rest of the grid would take over 2 minutes eager (see BENCHMARKS.md)",
    )
    g.add_argument(
        "--plain-forward",
        action="store_true",
        help="evaluate the model as written: no BatchNorm folded into the convolutions, no channels-last "
        "convolutions on CPU (same numbers to ~1e-6, up to 2x slower; see BENCHMARKS.md)",
    )
    g.add_argument("--no-progress", action="store_true")
    if not output:
        return
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="HDF5 file to write")
    o.add_argument("--resume", action="store_true", help="finish an interrupted file: computed points are kept")
    o.add_argument("--overwrite", action="store_true", help="replace an existing file")
    o.add_argument(
        "--format",
        choices=("landscape", "loss-landscape"),
        default="landscape",
        help="loss-landscape: write their exact layout instead (computed in OUT.partial.h5, converted at the end)",
    )


def split_list(text: str | list[str] | None) -> list[str] | None:
    """``train,test`` -> ``["train", "test"]`` (an empty name is refused: ``--split ''`` is no default)."""
    if text is None or isinstance(text, list):
        return text
    found = [s.strip() for s in text.split(",")]
    if "" in found or len(set(found)) != len(found):
        raise ValueError(f"--split: expected names like train or train,test, got {text!r}")
    return found


def analysis_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of a ``--problem`` analysis set by the evaluation and output flags."""
    return {
        "splits": split_list(args.split),
        "fast": not args.plain_forward,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
        "log": print,
    }


def eval_options(args: argparse.Namespace) -> EvalOptions:
    """The checkpoint's evaluation options, each flag checked here (one-line errors in the flags' words)."""
    from landscape._jobs import (  # here: the analyses' imports are not needed for --help
        SPLITS,
        EvalOptions,
    )

    splits = split_list(args.split) or ["train"]
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"--split must name train and/or test, got {','.join(splits)}")
    for flag, value in (("--samples", args.samples), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    return EvalOptions(
        splits=splits,
        samples=args.samples,
        sample_seed=args.sample_seed or 0,
        batch_size=args.batch_size or 1000,
        bn=args.bn,
        device=args.device or "auto",
        data_root=args.data_root,
        compile=args.compile,
        fast=not args.plain_forward,
        progress=not args.no_progress,
    )


def is_main_process() -> bool:
    """Rank 0 of a torchrun job (or the only process): the one that checks files and prints."""
    return os.environ.get("RANK", "0") == "0"


def input_paths(args: argparse.Namespace) -> tuple[str | None, ...]:
    """The files a job reads (checkpoints, a Hessian file, a run folder, a ``--problem`` file)."""
    found = [getattr(args, n, None) for n in ("checkpoint", "checkpoint_a", "checkpoint_b", "baseline", "run_dir")]
    hessian = getattr(args, "hessian", None)
    problem = getattr(args, "problem", None)
    return (*found, hessian if isinstance(hessian, str) else None, problem.rpartition(":")[0] if problem else None)


def check_output(args: argparse.Namespace) -> None:
    """Before any work: the output file may be written (a full analysis must not end in 'cannot write')."""
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if not is_main_process():
        return
    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder: give the file to write, e.g. {out / 'result.h5'}")
    from landscape._driver import check_output as check_result

    kind = "surface" if args.command in ("interpolate", "trajectory", "barrier", "connect") else args.command
    check_result(out, kind, input_paths(args))
    if out.exists() and not (args.resume or args.overwrite):
        raise ValueError(f"{args.out} exists: pass --resume to finish it or --overwrite to replace it")
    folder = next(p for p in [out.parent, *out.parent.parents] if p.exists())  # the folder (made if missing)
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {args.out}: cannot write into {folder}")


def output(args: argparse.Namespace, job) -> int:
    """Run ``job(path)``, then convert to loss-landscape's layout if asked (rank 0 of a torchrun job)."""
    check_output(args)
    if args.format == "landscape":
        job(args.out)
        if is_main_process():
            print(f"wrote {args.out}")
        return 0
    partial = f"{args.out}.partial.h5"
    job(partial)
    if not is_main_process():
        return 0
    from landscape.io import export_loss_landscape, read_directions, read_surface

    export_loss_landscape(read_surface(partial), read_directions(partial), args.out)
    Path(partial).unlink()
    print(f"wrote {args.out} (loss-landscape layout)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "surface",
        help=help_of("surface"),
        description="Loss and accuracy of a checkpoint on a grid w + x*d1 (+ y*d2).",
        epilog=SURFACE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint of landscape train (or --problem)")
    p.add_argument("--dim", type=int, choices=(1, 2), default=None, help="1 or 2 (default: 2 if --y is given)")
    p.add_argument("--x", default="-1:1:51", help="MIN:MAX:NUM [%(default)s]")
    p.add_argument("--y", default=None, help="MIN:MAX:NUM (2-D)")
    p.add_argument(
        "--norm", choices=NORMS, default=None, help="random directions: scaled per filter, layer, ... [filter]"
    )
    p.add_argument(
        "--ignore", choices=IGNORES, default=None, help="random directions: biasbn zeroes 1-D tensors [biasbn]"
    )
    p.add_argument(
        "--dir-type",
        choices=DIR_TYPES,
        default=None,
        help="random directions: states also moves BN statistics [weights]",
    )
    p.add_argument("--seed", type=INDEX, default=0, help="direction seed [%(default)s]")
    p.add_argument(
        "--direction-seeds",
        type=COUNT,
        default=1,
        metavar="K",
        help="random directions: the grid over K pairs of directions (seeds SEED..SEED+K-1), stored as each point's "
        "mean and std over them, with the basin width's [%(default)s]",
    )
    p.add_argument(
        "--refine",
        type=POSITIVE,
        default=None,
        metavar="TOL",
        help="adaptive refinement: evaluate a coarse grid, then only the cells whose interpolation is off by more "
        "than TOL in log10 of the loss (0.05: 12 %%); the rest interpolated [off]",
    )
    p.add_argument(
        "--bootstrap",
        type=number(int, least=2),
        default=None,
        metavar="K",
        help="cut the data (e.g. --samples N) into K blocks and store each point's bootstrap standard error over "
        "them: whether N examples are enough [off]",
    )
    p.add_argument("--orthogonal", action="store_true", help="make the second direction orthogonal to the first")
    p.add_argument(
        "--directions",
        choices=("random", "hessian"),
        default="random",
        help="random (normalized) or the top Hessian eigenvectors (unit norm) [%(default)s]",
    )
    p.add_argument(
        "--hessian",
        default=None,
        metavar="FILE.h5",
        help="with --directions hessian: take the eigenvectors from this `landscape hessian` file",
    )
    add_eval_args(p, problem=True)
    p.set_defaults(run=run_surface)

    q = sub.add_parser(
        "interpolate",
        help=help_of("interpolate"),
        description="1-D slice through checkpoint A (x=0) and B (x=1), direction B-A (not normalized).",
        epilog="examples:\n"
        "  landscape interpolate runs/erm/final.pt runs/sam/final.pt --x -0.5:1.5:41 --out erm_sam.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("checkpoint_a")
    q.add_argument("checkpoint_b")
    q.add_argument("--x", default="-0.5:1.5:41", help="MIN:MAX:NUM [%(default)s]")
    q.add_argument(
        "--dir-type", choices=DIR_TYPES, default="states", help="states also interpolates BN statistics [%(default)s]"
    )
    add_eval_args(q)
    q.set_defaults(run=run_interpolate)

    t = sub.add_parser(
        "trajectory",
        help=help_of("trajectory"),
        description="PCA of a run's saved checkpoints minus its final weights (Li et al. Sec. 7); the "
        "surface around final.pt on the top-2 components, the projected path and the "
        "explained variance stored with it.",
        epilog="examples:\n  landscape trajectory runs/sam --out sam_pca.h5\n"
        "  landscape trajectory runs/sam --x -10:10:31 --y -10:10:31 --out sam_pca.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("run_dir")
    t.add_argument("--x", default=None, help="MIN:MAX:NUM (default: the path's extent + 25%%, 21 points)")
    t.add_argument("--y", default=None, help="MIN:MAX:NUM (same default)")
    t.add_argument("--ignore", choices=IGNORES, default="biasbn", help="[%(default)s]")
    add_eval_args(t)
    t.set_defaults(run=run_trajectory)


def check_modes(args: argparse.Namespace) -> None:
    """Options that the chosen mode would ignore are errors, not silently dropped."""
    dim = args.dim or (2 if args.y else 1)
    if dim == 2 and not args.y:
        raise ValueError("--dim 2 needs --y MIN:MAX:NUM")
    if dim == 1 and args.y:
        raise ValueError("--y is for a 2-D surface: drop it, or use --dim 2")
    if dim == 1 and args.orthogonal:
        raise ValueError("--orthogonal makes the y direction orthogonal to x: it needs a 2-D surface (--y)")
    if args.hessian and args.directions != "hessian":
        raise ValueError("--hessian needs --directions hessian")
    if args.directions == "hessian":
        unused = [
            flag
            for flag, value in (
                ("--norm", args.norm),
                ("--ignore", args.ignore),
                ("--dir-type", args.dir_type),
                ("--orthogonal", args.orthogonal),
            )
            if value
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} shape random directions; --directions hessian uses the Hessian's "
                f"eigenvectors as they are: drop {'it' if len(unused) == 1 else 'them'}"
            )
    args.norm, args.ignore, args.dir_type = args.norm or "filter", args.ignore or "biasbn", args.dir_type or "weights"


def run_surface(args: argparse.Namespace) -> int:
    from landscape._jobs import hessian_surface, random_surface

    check_modes(args)
    xs = parse_range(args.x, "--x")
    ys = parse_range(args.y, "--y") if args.y else None
    problem = problem_from_args(args)
    if problem is not None:
        return output(
            args,
            lambda out: surface(
                problem,
                xs,
                ys,
                directions=args.directions,
                hessian=args.hessian,
                norm=args.norm,
                ignore=args.ignore,
                seed=args.seed,
                dir_type=args.dir_type,
                orthogonal=args.orthogonal,
                bn=args.bn,
                compile=args.compile,
                direction_seeds=args.direction_seeds,
                refine=args.refine,
                bootstrap=args.bootstrap,
                out=out,
                **analysis_kwargs(args),
            ),
        )
    opts = eval_options(args)
    if args.directions == "hessian":
        if args.direction_seeds > 1 or args.refine or args.bootstrap:
            raise ValueError(
                "--direction-seeds, --refine and --bootstrap go with random directions, not --directions hessian"
            )
        return output(
            args,
            lambda out: hessian_surface(
                args.checkpoint,
                out,
                xs,
                ys,
                opts,
                hessian_file=args.hessian,
                seed=args.seed,
                resume=args.resume,
                overwrite=args.overwrite,
                log=print,
            ),
        )
    return output(
        args,
        lambda out: random_surface(
            args.checkpoint,
            out,
            xs,
            ys,
            opts,
            norm=args.norm,
            ignore=args.ignore,
            seed=args.seed,
            dir_type=args.dir_type,
            orthogonal=args.orthogonal,
            direction_seeds=args.direction_seeds,
            refine=args.refine,
            bootstrap=args.bootstrap,
            resume=args.resume,
            overwrite=args.overwrite,
            log=print,
        ),
    )


def run_interpolate(args: argparse.Namespace) -> int:
    from landscape._jobs import interpolation_surface

    xs = parse_range(args.x, "--x")
    opts = eval_options(args)
    return output(
        args,
        lambda out: interpolation_surface(
            args.checkpoint_a,
            args.checkpoint_b,
            out,
            xs,
            opts,
            dir_type=args.dir_type,
            resume=args.resume,
            overwrite=args.overwrite,
            log=print,
        ),
    )


def run_trajectory(args: argparse.Namespace) -> int:
    from landscape._jobs import trajectory_surface

    run_dir = Path(args.run_dir)
    if run_dir.is_file():
        raise ValueError(
            f"trajectory takes a run's folder (the path through its checkpoints), not the file "
            f"{args.run_dir}: try landscape trajectory {run_dir.parent}"
        )
    xs = parse_range(args.x, "--x") if args.x else None
    ys = parse_range(args.y, "--y") if args.y else None
    opts = eval_options(args)
    return output(
        args,
        lambda out: trajectory_surface(
            args.run_dir, out, xs, ys, opts, ignore=args.ignore, resume=args.resume, overwrite=args.overwrite, log=print
        ),
    )
