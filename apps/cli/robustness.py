"""``landscape robustness``: error, NLL and ECE under image corruptions, CE and mCE against a baseline."""

from __future__ import annotations

import argparse

import numpy as np

from landscape.data.corruptions import parse_corruptions, parse_severities

from .commands import help_of
from .numbers import COUNT, INDEX, checked
from .surface import add_eval_args, check_output, eval_options

EXAMPLES = """examples:
  landscape robustness runs/damp/final.pt --baseline runs/erm/final.pt --out runs/damp/robustness.h5
  landscape robustness runs/sam/final.pt --corruptions gaussian_noise,fog --severities 3-5 --out sam_rob.h5
  landscape robustness runs/c10-damp/final.pt --baseline runs/c10-erm/final.pt --source released \\
      --c-root ~/data --out runs/c10-damp/robustness.h5       # reads ~/data/CIFAR-10-C/*.npy
  landscape robustness runs/damp/final.pt --out rob.h5 --resume    # after an interruption

Corruptions: all (15 common + 4 extra), common, extra, or names. --source generated applies them
to the checkpoint's test split with imagecorruptions (deterministic per --corruption-seed, cached
in ~/.cache/landscape or $LANDSCAPE_CACHE; images under 32 px are upsampled, corrupted and
averaged back); --source released reads CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C from --c-root.
CE_c = sum_s E(c,s) / sum_s E_baseline(c,s); mCE = mean CE over the common corruptions."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help=help_of("robustness"),
        description="Evaluate a checkpoint (and a baseline) on the clean test split and every corruption x severity.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint")
    p.add_argument("--baseline", default=None, help="checkpoint whose errors normalize CE (the paper: SGD/ERM)")
    add_corruption_args(p)
    p.add_argument("--source", choices=("generated", "released"), default="generated", help="[%(default)s]")
    p.add_argument("--c-root", default=None, help="folder holding CIFAR-10-C/, CIFAR-100-C/ or Tiny-ImageNet-C/")
    p.add_argument("--corruption-seed", type=INDEX, default=0, help="seed of the generated corruptions [%(default)s]")
    p.add_argument("--workers", type=COUNT, default=1, help="processes generating corruptions [%(default)s]")
    add_eval_args(p)
    p.set_defaults(run=run, split="test")


def add_corruption_args(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--corruptions`` and ``--severities``, each list checked whole when the command line is parsed."""
    p.add_argument(
        "--corruptions",
        type=checked(parse_corruptions),
        default="all",
        help=f"{what}all, common, extra or comma-separated names [%(default)s]",
    )
    p.add_argument("--severities", type=checked(parse_severities), default="1-5", help=f"{what}e.g. 1-5 or 1,3,5 [1-5]")


def run(args: argparse.Namespace) -> int:
    from landscape._jobs import robustness_analysis
    from landscape.io.robustness import read_robustness

    if (
        args.format != "landscape"
        or args.bn != "eval"
        or args.compile
        or args.plain_forward
        or args.split not in ("test", ["test"])
    ):
        raise ValueError(
            "robustness takes none of --format, --bn recompute, --compile, --plain-forward, "
            "--split (it uses the test split)"
        )
    if args.source == "released" and not args.c_root:
        raise ValueError("--source released needs --c-root (the folder holding CIFAR-10-C/ etc.)")
    if args.source == "generated" and args.c_root:
        raise ValueError("--c-root is for --source released (generated corruptions are made from the test split)")
    check_output(args)
    out = robustness_analysis(
        args.checkpoint,
        args.out,
        args.corruptions,
        args.severities,
        eval_options(args),
        baseline=args.baseline,
        source=args.source,
        c_root=args.c_root,
        seed=args.corruption_seed,
        workers=args.workers,
        resume=args.resume,
        overwrite=args.overwrite,
        log=print,
    )
    print(summary(read_robustness(out)))
    print(f"wrote {out}")
    return 0


def summary(r) -> str:
    """Per-severity error pooled over corruptions, and CE/mCE when a baseline is stored."""
    head = "severity  " + "  ".join(f"{s:>7d}" for s in r.severities) + "    clean"
    lines = [
        head,
        "error %   " + "  ".join(f"{v:7.2f}" for v in r.by_severity()) + f"  {r.clean():7.2f}",
        "ECE       " + "  ".join(f"{v:7.4f}" for v in r.by_severity("ece")) + f"  {r.clean('ece'):7.4f}",
    ]
    if r.has_baseline:
        ce = r.ce()
        lines.append("CE: " + ", ".join(f"{c} {v:.3f}" for c, v in zip(r.corruptions, ce)))
        lines.append(
            f"mCE {r.mce():.4f}   clean error relative to baseline {r.relative_clean_error():.4f}   "
            f"mean corruption error {np.mean(r.table()):.2f} % (baseline {np.mean(r.table(model='baseline')):.2f} %)"
        )
    return "\n".join(lines)
