"""``landscape align | barrier | connect``: are two minima one basin? Permutation alignment, the loss barrier on the
straight line, and a trained curve between them."""

from __future__ import annotations

import argparse
from pathlib import Path

from .commands import help_of
from .numbers import COUNT, INDEX, checked
from .problem import problem_from_args
from .surface import add_eval_args, analysis_kwargs, eval_options, is_main_process, output

ALIGN_CHOICES = ("weights", "activations")
MODELS_HELP = "two checkpoints A and B (or, with --problem, the other model B: a checkpoint or a saved state dict)"

BARRIER_EXAMPLES = """examples:
  landscape barrier runs/demo/erm/seed0/final.pt runs/demo/erm/seed1/final.pt --out erm_line.h5
  landscape barrier runs/demo/erm/seed0/final.pt runs/demo/erm/seed1/final.pt --align weights --out erm_aligned.h5
  landscape barrier A.pt B.pt --align activations --bn repair --split train,test --out repaired.h5
  landscape barrier --problem my_problem.py:problem other_state.pt --align weights --out mine.h5   # your own model

The loss of every split along (1 - t) A + t B, t from 0 to 1, and its barrier max_t [L(t) - ((1 - t) L(0) + t L(1))].
--align permutes B's hidden units to match A first (weight matching needs no data; activation matching uses the
training split). BatchNorm statistics are recomputed at every t (--bn recompute); --bn repair also restores every
hidden unit's statistics (REPAIR, Jordan et al. 2022). The file is a 1-D surface that plot, compare and explore
read."""

CONNECT_EXAMPLES = """examples:
  landscape connect runs/demo/sam/seed0/final.pt runs/demo/sam/seed1/final.pt --epochs 10 --out sam_curve.h5
  landscape connect A.pt B.pt --curve polychain --bends 3 --align weights --out chain.h5
  landscape connect A.pt B.pt --align weights --plane 21 --out curve.h5    # and curve_plane.h5: Garipov's figure
  landscape connect A.pt B.pt --epochs 20 --out curve.h5 --resume      # after an interruption

Trains the bends of a Bezier curve (or polygonal chain) from A to B on the training split: every batch draws t
uniformly and steps down the loss at the curve's point (Garipov et al. 2018), for any model. Training state is
saved in OUT.train.pt after every epoch; the loss along the trained curve is written as a 1-D surface."""

ALIGN_EXAMPLES = """examples:
  landscape align runs/demo/erm/seed0/final.pt runs/demo/erm/seed1/final.pt --out erm_seed1_aligned.pt
  landscape align A.pt B.pt --method activations --samples 1000 --out B_aligned.pt

Writes B with its hidden units permuted to match A: the same function as B (checked on the data), so every
analysis of it gives B's numbers, while its weights lie as close to A's as a permutation allows."""


def _command(sub: argparse._SubParsersAction, name: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A subcommand over two models A and B."""
    p = sub.add_parser(
        name,
        help=help_of(name),
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help=MODELS_HELP)
    return p


def _line_args(p: argparse.ArgumentParser, what: str, bn: tuple[str, ...]) -> None:
    p.add_argument("--points", type=COUNT, default=11, help=f"points along the {what} [%(default)s]")
    p.add_argument("--align", choices=ALIGN_CHOICES, default=None, help="permute B's units to match A first")
    add_eval_args(p, problem=True, bn=bn, bn_default="recompute")


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = _command(
        sub, "barrier", "The loss along the straight line between two models, and its barrier height.", BARRIER_EXAMPLES
    )
    _line_args(b, "line", ("recompute", "eval", "repair"))
    b.set_defaults(run=run_barrier)

    c = _command(sub, "connect", "Train a curve between two models and evaluate the loss along it.", CONNECT_EXAMPLES)
    c.add_argument("--curve", choices=("bezier", "polychain"), default="bezier", help="[%(default)s]")
    c.add_argument("--bends", type=COUNT, default=1, help="control points between the ends (1-14) [%(default)s]")
    c.add_argument("--epochs", type=INDEX, default=10, help="passes over the training split [%(default)s]")
    c.add_argument("--lr", type=checked(float), default=0.05, help="SGD learning rate, momentum 0.9 [%(default)s]")
    c.add_argument("--seed", type=INDEX, default=0, help="seed of the t drawn per batch [%(default)s]")
    c.add_argument(
        "--plane",
        type=COUNT,
        default=None,
        metavar="N",
        help="also the N x N loss surface in the plane of A, B and the bend, the curve drawn on it (OUT_plane.h5)",
    )
    _line_args(c, "curve", ("recompute", "eval"))
    c.set_defaults(run=run_connect)

    a = _command(
        sub, "align", "Permute B's hidden units to match A (same function), and save the result.", ALIGN_EXAMPLES
    )
    a.add_argument("--method", choices=ALIGN_CHOICES, default="weights", help="[%(default)s]")
    a.add_argument("--seed", type=INDEX, default=0, help="order of the groups in weight matching [%(default)s]")
    g = a.add_argument_group("evaluation (the data activation matching and the check use)")
    g.add_argument("--problem", metavar="FILE.py:NAME", default=None, help="your own landscape.Problem as A")
    g.add_argument("--samples", type=COUNT, default=None, help="a fixed seeded subset of N training images")
    g.add_argument("--batch-size", type=COUNT, default=None, help="[1000]")
    g.add_argument("--device", default=None, help="auto, cpu or cuda [auto]")
    g.add_argument("--data-root", default=None, help="dataset folder (default: the checkpoint's)")
    o = a.add_argument_group("output")
    o.add_argument("--out", required=True, help="the aligned model: a checkpoint (or, with --problem, a state dict)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing file")
    a.set_defaults(run=run_align, split=None, sample_seed=None)


def _models(args: argparse.Namespace) -> None:
    """``models`` -> ``checkpoint`` (A, or None with ``--problem``) and ``checkpoint_b``."""
    wanted = 1 if getattr(args, "problem", None) else 2
    if len(args.models) != wanted:
        raise ValueError(
            f"give two models A and B, got {len(args.models)}"
            if wanted == 2
            else f"with --problem (A) give one other model B, got {len(args.models)}"
        )
    args.checkpoint = args.models[0] if wanted == 2 else None
    args.checkpoint_b = args.models[-1]


def _problem(args: argparse.Namespace, batch_size: int | None = None):
    """A's problem: the user's, or the checkpoint over its splits and the training split."""
    from landscape._jobs import checkpoint_problem, process_device

    _models(args)
    problem = problem_from_args(args)
    if problem is not None:
        return problem
    opts = eval_options(args)
    if batch_size is not None and args.batch_size is None:
        opts.batch_size = batch_size
    return checkpoint_problem(args.checkpoint, opts, process_device(opts.device), ("train",))


def _report(result, what: str) -> None:
    if result is None or not is_main_process():
        return
    for split, height in result.barrier.items():
        loss = result.values[f"{split}_loss"]
        peak = int(loss.argmax())
        print(
            f"{what} {split}: barrier {height:.4g} (loss {loss[0]:.4g} at A, {loss[-1]:.4g} at B, "
            f"highest {loss[peak]:.4g} at t={result.t[peak]:.2f})"
        )


def run_barrier(args: argparse.Namespace) -> int:
    import landscape

    problem = _problem(args)
    found = []

    def job(out: str) -> None:
        found.append(
            landscape.barrier(
                problem,
                args.checkpoint_b,
                points=args.points,
                align=args.align,
                bn=args.bn,
                out=out,
                **analysis_kwargs(args),
            )
        )

    code = output(args, job)
    _report(found[0] if found else None, "line" if args.align is None else f"aligned line ({args.align})")
    return code


def run_connect(args: argparse.Namespace) -> int:
    import landscape

    problem = _problem(args, batch_size=128)
    found = []

    def job(out: str) -> None:
        found.append(
            landscape.connect(
                problem,
                args.checkpoint_b,
                curve=args.curve,
                bends=args.bends,
                epochs=args.epochs,
                lr=args.lr,
                align=args.align,
                points=args.points,
                seed=args.seed,
                bn=args.bn,
                out=out,
                **analysis_kwargs(args),
            )  # fmt: skip
        )

    code = output(args, job)
    _report(found[0] if found else None, f"{args.curve} curve")
    if args.plane and found:
        plane = Path(args.out).with_name(f"{Path(args.out).stem}_plane.h5")
        landscape.curve_plane(problem, args.out, points=args.plane, bn=args.bn, out=plane, **analysis_kwargs(args))
        if is_main_process():
            print(f"wrote {plane}")
    return code


def run_align(args: argparse.Namespace) -> int:
    import copy

    import torch

    import landscape
    from landscape._system.files import atomic_write
    from landscape.connectivity import other_model
    from landscape.trainers.checkpoint import read_checkpoint, save_checkpoint

    args.bn, args.compile, args.plain_forward, args.no_progress = "eval", None, False, True
    problem = _problem(args)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise ValueError(f"--out {args.out}: the aligned model is a .pt file")
    if out.resolve() in {Path(p).resolve() for p in args.models}:
        raise ValueError(f"--out {args.out} is one of the inputs: write the aligned model to another file")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists: pass --overwrite to replace it")
    other = other_model(problem, args.checkpoint_b)
    aligned = landscape.align(problem.model, other, method=args.method, data=problem, seed=args.seed, log=print)
    state = {k: v.detach().cpu() for k, v in aligned.state_dict().items()}
    if args.checkpoint is None:
        atomic_write(out, lambda tmp: torch.save(state, tmp))
    else:
        payload = {k: v for k, v in read_checkpoint(args.checkpoint_b).items() if k not in ("format", "version")}
        payload["model_state"] = state
        payload["config"] = {**copy.deepcopy(payload["config"]), "aligned_to": str(args.checkpoint)}
        save_checkpoint(out, payload)
    print(f"wrote {args.out} (B's units permuted to match A, {args.method} matching)")
    return 0
