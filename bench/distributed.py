"""Training-step cost of N ranks (torchrun) against one process, with the same global batch, model and method.

On CPU: 2 ranks x 1 thread (gloo) against 1 process x 2 threads. On GPU (``--device cuda``): one rank
per visible GPU (nccl) against one process on one GPU. Each measurement is a fresh run of warm-up
steps then timed steps, the layouts alternating for several rounds.

    python bench/distributed.py                                  # CPU
    python bench/distributed.py --device cuda --model resnet18 --width 64 --bf16    # every visible GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from report import report


def worker(args: argparse.Namespace) -> None:
    import torch

    from landscape._system.ranks import init_group
    from landscape.data import load_dataset
    from landscape.data.loader import TensorLoader
    from landscape.trainers import create_model
    from landscape.trainers.distributed import batchnorm_buffers
    from landscape.trainers.optim import BatchClosure, build_method

    group, rank_device = init_group(args.device)
    device = rank_device or torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    ds = load_dataset(args.dataset)
    loader = TensorLoader(
        ds.train_x,
        ds.train_y,
        mean=ds.mean,
        std=ds.std,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        shard=(group.rank, group.world),
        device=device,
        channels_last=cuda,
    )
    model = create_model(args.model, num_classes=10, in_channels=ds.in_channels, width=args.width).to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    extra = {"num_splits": 8} if args.method == "damp" else {}
    opt = build_method(args.method, model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), **extra)
    opt.distribute(group)
    buffers = batchnorm_buffers(model)
    batches = iter(loader)
    times = []
    for step in range(args.warmup + args.steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        if cuda:
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        opt.step(BatchClosure(model, x, y, autocast_dtype=torch.bfloat16 if args.bf16 else None))
        group.mean_(buffers)
        if cuda:
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - tic)
    if group.is_main:
        print(f"MS_PER_STEP {1000 * statistics.median(times):.2f}")


def measure(ranks: int, args: argparse.Namespace) -> float:
    common = [
        "--worker",
        "--method",
        args.method,
        "--model",
        args.model,
        "--width",
        str(args.width),
        "--dataset",
        args.dataset,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
    ] + (["--bf16"] if args.bf16 else [])
    cmd = (
        [sys.executable, __file__, *common]
        if ranks == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            __file__,
            *common,
        ]
    )
    threads = str(max(1, (os.cpu_count() or 1) // ranks)) if args.device == "cpu" else "4"
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    for attempt in (1, 2):  # a rendezvous can fail on a port just released by the previous run: once more
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode == 0:
            return float(next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("MS_PER_STEP")))
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="erm")
    ap.add_argument("--methods", default="erm,sam,damp")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--dataset", default="digits32")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, every visible GPU)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    ranks = torch.cuda.device_count() if args.device == "cuda" else 2
    where = f"{ranks} x {torch.cuda.get_device_name(0)}" if args.device == "cuda" else f"CPU, {os.cpu_count()} cores"
    lines = [
        f"## {ranks} ranks vs 1 process: {args.model}(width={args.width}) on {args.dataset}, global batch "
        f"{args.batch_size}{', bf16' if args.bf16 else ''}, {where}; median ms/step of {args.steps} steps, "
        f"{args.rounds} alternating rounds",
        "",
        f"| method | 1 process | {ranks} ranks | ratio ({ranks} ranks / 1 process) |",
        "|---|---|---|---|",
    ]
    for method in args.methods.split(","):
        args.method = method
        one, many = [], []
        for _ in range(args.rounds):
            one.append(measure(1, args))
            many.append(measure(ranks, args))
        ratio = statistics.median(b / a for a, b in zip(one, many))
        lines.append(f"| {method} | {statistics.median(one):.1f} | {statistics.median(many):.1f} | {ratio:.2f} |")
    report(lines, args.out, f"distributed-{args.device}.md")


if __name__ == "__main__":
    main()
