"""``landscape train``: train one method into a run directory."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from landscape._system.device import resolve_device
from landscape.data import DATASETS
from landscape.data.corruptions import parse_severities
from landscape.trainers import METHODS, MODELS
from landscape.trainers.schedules import SCHEDULES
from landscape.trainers.train import PRECISIONS, TrainConfig, train

from .commands import help_of
from .numbers import COUNT, INDEX, NONNEGATIVE, POSITIVE, checked, number

EXAMPLES = """examples:
  landscape train --method erm --epochs 10 --out runs/erm
  landscape train --method sam --rho 0.05 --out runs/sam
  landscape train --method amp --epsilon 0.5 --inner-lr 1 --inner-iter 1 --out runs/amp
  landscape train --method damp --sigma 0.2 --num-splits 8 --out runs/damp
  landscape train --method erm --augment-corruption fog --augment-severity 1-5 --out runs/erm-fog
  landscape train --method sam --model resnet18 --dataset cifar10 --data-root ~/data \\
      --epochs 200 --nesterov --schedule step --bf16 --out runs/c10-sam
  landscape train --out runs/sam --method sam --resume      # continue after an interruption
  landscape train --method sam --nproc 2 --out runs/sam2     # 2 processes (torchrun): the same run as one
  landscape train --method sam --seeds 0-2 --out runs/sam   # runs/sam/seed0..seed2, grouped by compare
  landscape train --method sam --track-curvature 100 --track-data 1000 --out runs/sam   # curvature.jsonl
  landscape train --model mlp --batch-size full --lr 0.2 --momentum 0 --weight-decay 0 --schedule constant \\
      --track-curvature 20 --out runs/gd                      # full-batch gradient descent: the edge of stability
  torchrun --nproc_per_node=8 -m landscape.apps.cli train --method damp --model resnet18 --dataset cifar10 \\
      --data-root ~/data --sync-bn --out runs/c10-damp       # 8 GPUs, one noise draw per GPU (M = 8)

method hyperparameters (defaults in brackets):
""" + "\n".join(
    f"  {m.name:5s} {m.description}; {m.passes} forward+backward per step"
    + (" [" + ", ".join(f"{k}={v}" for k, v in m.hparams.items()) + "]" if m.hparams else "")
    for m in METHODS.values()
)

HPARAM_CHOICES = {
    "adaptive_params": ("weights", "all"),
    "norm": ("per_tensor", "global"),
    "perturb": ("weights", "all"),
}
HPARAM_HELP = {
    "rho": "SAM/ASAM radius",
    "eta": "ASAM offset of T = |w| + eta",
    "adaptive_params": "ASAM: scale weights only (official) or all params (davda54)",
    "epsilon": "AMP ball radius / RMP noise scale",
    "inner_lr": "AMP inner ascent step",
    "inner_iter": "AMP inner steps",
    "norm": "AMP projection: per tensor (reference code) or global (paper)",
    "sigma": "DAMP/DAAP noise std",
    "num_splits": "DAMP/DAAP sub-batches M, one noise draw each",
    "perturb": "DAMP/DAAP: noise weights only (reference) or all params",
}


def _hparam_types() -> dict[str, Callable[[str], object]]:
    """Each hyperparameter's parser: counts (inner_iter, num_splits) >= 1, numbers >= 0 and finite, names as text."""
    types: dict[str, Callable[[str], object]] = {}
    for info in METHODS.values():
        for k, v in info.hparams.items():
            types.setdefault(k, COUNT if isinstance(v, int) else NONNEGATIVE if isinstance(v, float) else str)
    return types


def severities_text(text: str) -> str:
    """The severities as given (``1-5``), checked now: ``''`` is no default."""
    parse_severities(text)
    return text


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help=help_of("train"),
        description="Train one method; writes config.json, metrics.jsonl, checkpoints/epoch_NNN.pt "
        "and final.pt into --out.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TrainConfig()
    p.add_argument("--method", default=d.method, help=f"one of {', '.join(METHODS)} [%(default)s]")
    p.add_argument("--model", default=d.model, help=f"one of {', '.join(MODELS)} [%(default)s]")
    p.add_argument(
        "--model-arg",
        action="append",
        type=_model_arg,
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument, e.g. width=32 or depth=16 (repeatable)",
    )
    p.add_argument("--dataset", default=d.dataset, help=f"one of {', '.join(DATASETS)} [%(default)s]")
    p.add_argument("--data-root", default=None, help="folder holding the on-disk datasets (never downloaded)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=COUNT, default=d.epochs, help="[%(default)s]")
    g.add_argument(
        "--batch-size",
        type=batch_size,
        default=d.batch_size,
        help="images per step, or full: the whole training set (full-batch gradient descent) [%(default)s]",
    )
    g.add_argument("--eval-batch-size", type=COUNT, default=d.eval_batch_size, help="[%(default)s]")
    g.add_argument("--lr", type=NONNEGATIVE, default=d.lr, help="base SGD learning rate [%(default)s]")
    g.add_argument("--momentum", type=number(float, least=0, most=1), default=d.momentum, help="[%(default)s]")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    g.add_argument(
        "--weight-decay", type=NONNEGATIVE, default=d.weight_decay, help="applied at the clean weights [%(default)s]"
    )
    g.add_argument(
        "--clip-grad-norm",
        type=POSITIVE,
        default=None,
        metavar="C",
        help="clip every gradient the method uses, ascent and descent, to global L2 norm C after the ranks' "
        "average (the AMP reference clips at 50 inside its closure) [off]",
    )
    g.add_argument(
        "--accumulate",
        type=COUNT,
        default=d.accumulate,
        metavar="K",
        help="gradient accumulation: each pass over a batch runs as K micro-batches of batch-size/K, one backward "
        "each; the update is the whole batch's (BatchNorm sees micro-batch statistics) [%(default)s]",
    )
    g.add_argument(
        "--swa-start",
        type=COUNT,
        default=None,
        metavar="EPOCH",
        help="stochastic weight averaging: the mean of the weights at the end of every epoch from EPOCH on, BatchNorm "
        "recomputed on the training set, saved as final_swa.pt (any analysis takes it) [off]",
    )
    g.add_argument(
        "--swa-lr", type=POSITIVE, default=None, metavar="LR", help="constant lr after --swa-start [the schedule]"
    )
    g.add_argument(
        "--ema",
        type=number(float, least=0, most=0.999999),
        default=None,
        metavar="DECAY",
        help="an exponential moving average of the weights (and buffers), DECAY per step, saved as final_ema.pt [off]",
    )
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="[%(default)s]")
    g.add_argument(
        "--track-curvature",
        type=COUNT,
        default=None,
        metavar="EVERY",
        help="measure the top Hessian eigenvalue, gradient norm, directional sharpness and critical learning rate "
        "every EVERY steps into curvature.jsonl (SAM: its sharpness too) [off]",
    )
    g.add_argument(
        "--track-data",
        type=COUNT,
        default=None,
        metavar="N",
        help="with --track-curvature: on a fixed seeded subset of N training images [all]",
    )
    g.add_argument("--crop-padding", type=INDEX, default=None, help="random-crop padding (default: the dataset's)")
    g.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: the dataset's)",
    )
    g.add_argument(
        "--bn-update",
        choices=("once", "every_pass"),
        default=d.bn_update,
        help="BatchNorm running statistics: updated once per step, or by every pass (AMP reference) [%(default)s]",
    )
    g.add_argument(
        "--augment-corruption",
        default=None,
        metavar="NAME",
        help="train on this corruption applied to a random half of each batch (DAMP paper, Algorithm 2)",
    )
    g.add_argument(
        "--augment-severity",
        type=checked(severities_text),
        default=None,
        metavar="S",
        help="severities the corrupted images draw from uniformly, e.g. 3 or 1-5 (default 1-5)",
    )
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=INDEX, default=None, help=f"[{d.seed}]")
    r.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        metavar="LIST",
        help="one run per seed, e.g. 0,1,2 or 0-4: OUT/seed0, OUT/seed1, ... (grouped by compare and explore)",
    )
    r.add_argument("--device", default=d.device, help="auto, cpu or cuda [%(default)s]")
    r.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="fp32; bf16 (autocast); fp16 (autocast and a GradScaler: overflowing steps are skipped whole and "
        "counted, the scale resumes with the run) [%(default)s]",
    )
    r.add_argument("--bf16", action="store_true", help="the same as --precision bf16")
    r.add_argument("--save-every", type=COUNT, default=d.save_every, help="checkpoint every N epochs [%(default)s]")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument(
        "--nproc",
        type=COUNT,
        default=1,
        metavar="N",
        help="train on N processes of this machine (launches torchrun; gloo on CPU, nccl on GPU) [1]",
    )
    r.add_argument(
        "--sync-bn",
        action="store_true",
        help="several processes: BatchNorm statistics of the global batch (default: each rank its own)",
    )
    r.add_argument(
        "--local-ascent",
        action="store_true",
        help="several processes, sam/asam/amp: each rank ascends with its own gradient (m-sharpness)",
    )
    h = p.add_argument_group("method hyperparameters (default: the method's own)")
    for name, typ in _hparam_types().items():
        h.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"hp_{name}",
            type=typ,
            default=None,
            choices=HPARAM_CHOICES.get(name),
            help=HPARAM_HELP.get(name),
        )
    p.set_defaults(run=run)


def batch_size(text: str) -> int | str:
    """A batch size, or ``full`` (resolved to the training set's size when the dataset is known)."""
    return "full" if text == "full" else COUNT(text)


def training_size(args: argparse.Namespace) -> int:
    """``--batch-size full``: the number of training images of ``--dataset``."""
    from landscape.data import load_dataset

    return len(load_dataset(args.dataset, args.data_root).train_y)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    hparams = {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_") and v is not None}
    accepted = METHODS[args.method].hparams if args.method in METHODS else {}
    wrong = [k for k in hparams if k not in accepted]
    if wrong and args.method in METHODS:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        takes = ", ".join("--" + k.replace("_", "-") for k in accepted) or "no hyperparameters"
        raise ValueError(f"{flags} does not apply to --method {args.method} (it takes {takes})")
    return TrainConfig(
        method=args.method,
        model=args.model,
        dataset=args.dataset,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=training_size(args) if args.batch_size == "full" else args.batch_size,
        eval_batch_size=args.eval_batch_size,
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=TrainConfig.seed if args.seed is None else args.seed,
        device=args.device,
        bf16=args.bf16,
        precision=args.precision,
        save_every=args.save_every,
        crop_padding=args.crop_padding,
        hflip=args.hflip,
        bn_update=args.bn_update,
        augment_corruption=args.augment_corruption,
        augment_severity=args.augment_severity,
        sync_bn=args.sync_bn,
        local_ascent=args.local_ascent,
        clip_grad_norm=args.clip_grad_norm,
        accumulate=args.accumulate,
        swa_start=args.swa_start,
        swa_lr=args.swa_lr,
        ema=args.ema,
        track_curvature=args.track_curvature,
        track_data=args.track_data,
        model_kwargs=dict(args.model_arg),
        hparams=hparams,
    )


MAX_SEEDS = 1_000


def seed_list(text: str) -> list[int]:
    """``0,1,2`` or ``0-4`` (or both, ``0-2,7``): distinct seeds >= 0, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None or (m[2] is not None and int(m[2]) < int(m[1])):
            raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2 or 0-4, got {text!r}")
        seeds += list(range(int(m[1]), int(m[2] or m[1]) + 1))
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"{len(seeds)} seeds: at most {MAX_SEEDS} runs at once")
    return seeds


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if (args.sync_bn or args.local_ascent) and args.nproc == 1 and "WORLD_SIZE" not in os.environ:
        raise ValueError(f"{'--sync-bn' if args.sync_bn else '--local-ascent'} is for several processes: add --nproc N")
    if args.seeds is not None:
        if args.seed is not None:
            raise ValueError("--seed and --seeds exclude each other")
        for seed in args.seeds:  # one run directory per seed, each resumable on its own
            code = run_one(
                args,
                replace(cfg, seed=seed),
                str(Path(args.out) / f"seed{seed}"),
                ["--seed", str(seed), "--out", str(Path(args.out) / f"seed{seed}")],
            )
            if code:
                return code
        return 0
    return run_one(args, cfg, args.out, [])


def run_one(args: argparse.Namespace, cfg: TrainConfig, out: str, override: list[str]) -> int:
    """Train one run, here or (``--nproc N``) under a torchrun launched on this machine."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        cfg.validate(args.nproc)  # here, in one line, rather than in every rank
        resolve_device(cfg.device)
        return launch(
            args.nproc,
            without(args.argv, ("--nproc", "--seeds", *(("--seed", "--out") if override else ()))) + override,
        )
    train(cfg, out, resume=args.resume, progress=not args.no_progress)
    return 0


def without(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``argv`` less the given options and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif not a.startswith(tuple(f"{f}=" for f in flags)):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """``torchrun --standalone --nproc_per_node=N -m landscape.apps.cli ARGV`` on this machine (its report of a
    failed rank replaced by our line: :mod:`landscape.apps.cli.torchrun`); its exit code."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = [
        sys.executable,
        "-m",
        "landscape.apps.cli.torchrun",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "landscape.apps.cli",
        *argv,
    ]
    return subprocess.run(cmd, env=env).returncode
