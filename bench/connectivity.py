"""Cost of connectivity: weight matching of a ResNet-18, and a curve's training step against a plain one.

Weight matching (``landscape.align``): the fx analysis and the coordinate descent timed apart, for two ResNet-18s
of different initialisations and for a randomly permuted copy (undone exactly: the largest parameter difference
is printed). Curve training (``landscape.connect``'s step): one forward/backward at the curve's point plus the bend
bookkeeping (the point's tensors combined from the control points, the gradient flowing back into the bends),
against a plain SGD step of the same model on the same batch, interleaved in one run.

    OMP_NUM_THREADS=1 python bench/connectivity.py
    python bench/connectivity.py --width 64 --rounds 15
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
from report import report
from tqdm.auto import tqdm

import landscape
from landscape import _curves
from landscape._permutations import analyse
from landscape._system.ranks import Ranks
from landscape.alignment import permute_state, weight_matching
from landscape.data import load_dataset
from landscape.trainers import create_model


def seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def matching_rows(width: int) -> list[str]:
    torch.manual_seed(0)
    a, b = (create_model("resnet18", 10, 3, width=width) for _ in range(2))
    params = sum(p.numel() for p in a.parameters())
    found: dict = {}
    trace_s = seconds(lambda: found.update(zip(("spec", "analysis"), analyse(a))))
    spec, analysis = found["spec"], found["analysis"]
    state_a, state_b = a.state_dict(), b.state_dict()
    named = dict(a.named_parameters())
    match_s = seconds(lambda: found.update(perms=weight_matching(spec, named, state_b)))
    shuffled = permute_state(
        spec, state_a, [torch.randperm(g.size, generator=torch.Generator().manual_seed(1)) for g in spec.groups],
        analysis.canonical,
    )  # fmt: skip
    b_perm = copy.deepcopy(a)
    b_perm.load_state_dict(shuffled)
    whole: dict = {}
    align_s = seconds(lambda: whole.update(model=landscape.align(a, b_perm)))
    err = max(float((whole["model"].state_dict()[k] - v).abs().max()) for k, v in state_a.items())
    return [
        f"ResNet-18 (CIFAR stem, width {width}): {params / 1e6:.1f}M parameters, {len(spec.groups)} permutation "
        f"groups (largest {max(g.size for g in spec.groups)} units)",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| fx analysis (permutation groups from the trace) | {trace_s:.2f} |",
        f"| weight matching, two independent initialisations | {match_s:.2f} |",
        f"| align() of a randomly permuted copy (analysis + matching + copy) | {align_s:.2f} |",
        "",
        f"The permuted copy is undone exactly: largest parameter difference after alignment {err:.1e}.",
    ]


def step_rows(rounds: int, batch_size: int, steps: int = 8) -> list[str]:
    """Per step, timed over epochs of ``steps`` batches (the curve's per-epoch set-up shared as in training)."""
    ds = load_dataset("digits")
    x, y = ds.split("train")
    x = (x.float() / 255)[: steps * batch_size]
    y = y[: steps * batch_size]
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    other = copy.deepcopy(model)
    problem = landscape.Problem(model, {"train": (x, y)}, batch_size=batch_size)
    plain = copy.deepcopy(model).train()
    sgd = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    a = {k: p.detach().clone() for k, p in model.named_parameters()}
    b = {k: p.detach().clone() for k, p in other.named_parameters()}
    bends = [{k: v.requires_grad_() for k, v in c.items()} for c in _curves.on_line(a, b, 1)]
    controls = [a, *bends, b]
    opt = torch.optim.SGD([t for c in bends for t in c.values()], lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    def plain_step() -> None:
        for i in range(0, len(y), batch_size):
            sgd.zero_grad()
            loss_fn(plain(x[i : i + batch_size]), y[i : i + batch_size]).backward()
            sgd.step()

    bar = tqdm(disable=True)

    def curve_step() -> None:
        _curves.train_epoch(problem, controls, opt, "bezier", "train", generator, Ranks(), bar)

    times: dict[str, list[float]] = {"plain SGD step": [], "curve step (Bezier, 1 bend)": []}
    for fn in (plain_step, curve_step):  # warm-up
        fn()
    for _ in range(rounds):
        times["plain SGD step"].append(seconds(plain_step))
        times["curve step (Bezier, 1 bend)"].append(seconds(curve_step))
    times = {k: [t / steps for t in ts] for k, ts in times.items()}  # per step
    base = statistics.median(times["plain SGD step"])
    lines = [
        f"small_cnn, batches of {batch_size} digits, epochs of {steps} steps, {rounds} interleaved rounds, "
        f"{torch.get_num_threads()} threads",
        "",
        "| step | ms (median) | ms (best) | x plain (median) |",
        "|---|---|---|---|",
    ]
    for name, ts in times.items():
        median = statistics.median(ts)
        lines.append(f"| {name} | {1000 * median:.1f} | {1000 * min(ts):.1f} | {median / base:.2f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=64, help="ResNet-18 width [%(default)s]")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    lines = ["## Weight matching", "", *matching_rows(args.width), "", "## Curve training step", ""]
    lines += step_rows(args.rounds, args.batch_size)
    report(lines, args.out, "connectivity.md")


if __name__ == "__main__":
    main()
