"""Per-step cost of every method relative to ERM, interleaved in one run (same model, batch, init).

Also times a SAM written per parameter in the style of the common reference
implementation (davda54/sam with its BatchNorm momentum bypass), to show what the
foreach, sync-free version saves, and two rows that split DAMP's cost: ERM's batch run as
DAMP's 8 sub-batches with no noise, and DAMP with its noise draws replaced by zeros.

    OMP_NUM_THREADS=1 python bench/step_cost.py                       # CPU, 1 thread
    python bench/step_cost.py --device cuda --model resnet18 --batch-size 128
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
from report import report

from landscape.data import load_dataset
from landscape.trainers import create_model
from landscape.trainers.optim import METHODS, BatchClosure, build_method


class LoopSAM(torch.optim.Optimizer):
    """SAM as davda54/sam writes it: per-parameter loops, ``.data`` rebinding, ``old_p`` clones."""

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        shared = self.param_groups[0]["params"][0].device
        norm = torch.norm(
            torch.stack(
                [p.grad.norm(p=2).to(shared) for g in self.param_groups for p in g["params"] if p.grad is not None]
            ),
            p=2,
        )
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_(p.grad * scale.to(p))
        self.zero_grad()

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        self.zero_grad()


def set_bn_momentum(model: nn.Module, enable: bool) -> None:
    """davda54's bypass_bn: momentum 0 during the second pass."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if enable and hasattr(m, "backup_momentum"):
                m.momentum = m.backup_momentum
            elif not enable:
                m.backup_momentum = m.momentum
                m.momentum = 0


def loop_sam_step(model, opt, loss_fn):
    set_bn_momentum(model, True)
    loss_fn(model).backward()
    opt.first_step()
    set_bn_momentum(model, False)
    loss_fn(model).backward()
    opt.second_step()


def make_steppers(init: nn.Module, loss_fn, autocast) -> dict:
    """One model copy and optimizer per method; ``loss_fn(model) -> loss`` is the workload."""
    sgd = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    steppers = {}
    for name in METHODS:
        model = copy.deepcopy(init)
        opt = build_method(name, model, torch.optim.SGD(model.parameters(), **sgd))
        steppers[name] = lambda m=model, o=opt: o.step(lambda part, parts: loss_fn(m, part, parts))
    model = copy.deepcopy(init)
    opt = build_method("damp", model, torch.optim.SGD(model.parameters(), **sgd), num_splits=1)
    steppers[DAMP1] = lambda m=model, o=opt: o.step(lambda part, parts: loss_fn(m, part, parts))
    model = copy.deepcopy(init)  # DAMP's limits: the sub-batches alone, then DAMP with its noise draws zeroed
    opt = build_method("erm", model, torch.optim.SGD(model.parameters(), **sgd))
    steppers[SPLIT8] = lambda m=model, o=opt: o.step(
        lambda part, parts: sum(loss_fn(m, j, 8) for j in range(8)) / 8  # 8 sub-batch forwards, one backward
    )
    model = copy.deepcopy(init)
    opt = build_method("damp", model, torch.optim.SGD(model.parameters(), **sgd))
    opt._draw = lambda flat, g: flat.zero_()  # type: ignore[method-assign]
    steppers[DAMP0] = lambda m=model, o=opt: o.step(lambda part, parts: loss_fn(m, part, parts))
    loop_model = copy.deepcopy(init)
    loop_opt = LoopSAM(loop_model.parameters(), torch.optim.SGD, rho=0.05, **sgd)
    steppers[LOOP] = lambda: loop_sam_step(loop_model, loop_opt, lambda m: loss_fn(m, 0, 1))
    return steppers


def interleaved_times(steppers: dict, rounds: int, steps: int, device: torch.device) -> dict[str, list[float]]:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {k: [] for k in steppers}
    for fn in steppers.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in steppers.items():
            sync()
            tic = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            times[name].append((time.perf_counter() - tic) / steps)
    return times


def table(times: dict[str, list[float]]) -> list[str]:
    passes = {k: v.passes for k, v in METHODS.items()} | {LOOP: "2", DAMP1: "1", SPLIT8: "1", DAMP0: "1"}
    lines = [
        "| method | F+B passes | ms/step (median) | ms/step (best) | x ERM (median of per-round ratios) | "
        "x ERM (best / best) |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in times.items():
        ratios = [t / e for t, e in zip(v, times["erm"])]
        lines.append(
            f"| {k} | {passes[k]} | {1000 * statistics.median(v):.2f} | {1000 * min(v):.2f} | "
            f"{statistics.median(ratios):.2f} | {min(v) / min(times['erm']):.2f} |"
        )
    vs_loop = [a / b for a, b in zip(times["sam"], times[LOOP])]
    return lines + [
        "",
        f"foreach SAM time / per-parameter-loop SAM time: median of per-round ratios "
        f"{statistics.median(vs_loop):.2f}, best / best {min(times['sam']) / min(times[LOOP]):.2f}",
    ]


LOOP = "sam (per-parameter loop)"
DAMP1 = "damp (num_splits=1)"
SPLIT8 = "erm in 8 sub-batches (no noise)"
DAMP0 = "damp (M = 8) drawing zeros"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--dataset", default="digits32")
    ap.add_argument("--batch-size", type=int, default=128, help="the papers' batch (DAMP: 128 in 8 sub-batches)")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    device = torch.device(args.device)
    ds = load_dataset(args.dataset)
    x = ((ds.train_x[: args.batch_size].float() / 255 - 0.5) / 0.25).to(device)
    y = ds.train_y[: args.batch_size].to(device)
    torch.manual_seed(0)
    init = create_model(args.model, ds.num_classes, ds.in_channels, width=args.width).to(device)
    if device.type == "cuda":
        init = init.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.bfloat16 if args.bf16 else None

    def batch_loss(model, part, parts):
        return BatchClosure(model, x, y, autocast_dtype=autocast)(part, parts)

    def arithmetic_loss(model, part, parts):
        """Near-free forward/backward: isolates each optimizer's own perturbation arithmetic."""
        return sum((p * p).sum() for p in model.parameters())

    model_times = interleaved_times(make_steppers(init, batch_loss, autocast), args.rounds, args.steps, device)
    arith_times = interleaved_times(
        make_steppers(init, arithmetic_loss, autocast), args.rounds, 10 * args.steps, device
    )

    n_params = sum(p.numel() for p in init.parameters())
    n_tensors = sum(1 for _ in init.parameters())
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    lines = [
        f"## step cost: {args.model}(width={args.width}), {n_params:,} params in {n_tensors} tensors, {args.dataset} "
        f"batch {args.batch_size}, {dev}{', bf16 autocast' if args.bf16 else ''}",
        f"{args.rounds} interleaved rounds of {args.steps} step(s) per method (arithmetic: {10 * args.steps}); "
        "'best' is the fastest round (least disturbed by other load)",
        "",
        "### full training step",
        "",
        *table(model_times),
        "",
        "### optimizer arithmetic alone (loss = sum of squared weights: forward/backward nearly free; "
        "DAMP/DAAP still evaluate it once per sub-batch)",
        "",
        *table(arith_times),
    ]
    report(lines, args.out, f"step_cost-{device.type}-{args.model}.md")


if __name__ == "__main__":
    main()
