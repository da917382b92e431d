"""Evaluation of a Problem's loss: device-resident data against a streamed DataLoader, in one run.

One pass over the same images with the same model, interleaved rounds:

- ``plain loop``: a hand-written ``for x, y in tensor.split(...)`` loop computing loss and accuracy (what the
  analyses ran before they took a Problem);
- ``Problem((x, y))``: tensors kept on the device, batches are views;
- ``Problem(loader)``: a DataLoader, cached on the device after its first pass (what fits does);
- ``Problem(loader, cache=False)``: the DataLoader streamed, re-iterated every pass (data too big for the device);
- ``Problem(loader of batches, cache=False)``: streamed from a loader whose dataset yields whole batches
  (``batch_size=None`` with a batch sampler: no per-sample collate).

    OMP_NUM_THREADS=1 python bench/problem.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F
from report import report
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler, TensorDataset

from landscape.data import load_dataset
from landscape.problem import Problem
from landscape.trainers import create_model


class Batches(Dataset):
    """Indexable by a list of indices: one tensor slice per batch (the collate-free way to stream)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--dataset", default="digits32")
    ap.add_argument("--samples", type=int, default=1437)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    # standard strides: a DataLoader's collate stacks to them, and 1-channel images sliced from the dataset's own
    # (N, 1, H, W) tensor have channels-last strides, which oneDNN runs ~1.3x faster: not the data path's doing
    x = ((ds.train_x[: args.samples].float() / 255 - 0.5) / 0.25).clone(memory_format=torch.contiguous_format)
    y = ds.train_y[: args.samples]
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=x.shape[1], width=args.width).eval()
    n_params = sum(p.numel() for p in model.parameters())
    bs = args.batch_size

    def plain() -> float:  # loss and accuracy, as the analyses compute them
        total, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.long)
        with torch.inference_mode():
            for xb, yb in zip(x.split(bs), y.split(bs)):
                logits = model(xb)
                total += F.cross_entropy(logits, yb, reduction="sum").double()
                correct += (logits.argmax(1) == yb).sum()
        return float(total / len(y))

    loader = DataLoader(TensorDataset(x, y), batch_size=bs)
    whole = DataLoader(
        Batches(x, y), batch_size=None, sampler=BatchSampler(SequentialSampler(range(len(y))), bs, False)
    )
    problems = {
        "Problem((x, y)): tensors on the device": Problem(model, (x, y), batch_size=bs),
        "Problem(DataLoader): cached on the device": Problem(model, loader),
        "Problem(DataLoader, cache=False): streamed": Problem(model, loader, cache=False),
        "Problem(DataLoader of whole batches, cache=False): streamed": Problem(model, whole, cache=False),
    }
    variants = {
        "plain loop (no Problem)": plain,
        **{k: (lambda p=p: p.evaluate("train")["loss"]) for k, p in problems.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    values = {}
    for r in range(args.rounds):
        order = list(variants)
        random.Random(r).shuffle(order)  # no variant always runs first (or right after another)
        for name in order:
            tic = time.perf_counter()
            values[name] = variants[name]()
            times[name].append(time.perf_counter() - tic)
    base = times["Problem((x, y)): tensors on the device"]
    lines = [
        f"## Problem evaluation: {args.model}(width={args.width}) {n_params:,} params, {len(y)} {args.dataset} images, "
        f"batches of {bs}, CPU {torch.get_num_threads()} thread(s); median of {args.rounds} rounds in shuffled order",
        "",
        "| data | ms per pass | x tensors on the device | loss |",
        "|---|---|---|---|",
    ]
    for name, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(t, base))
        lines.append(f"| {name} | {1000 * statistics.median(t):.1f} | {ratio:.3f} | {values[name]:.7f} |")
    report(lines, args.out, "problem-cpu.md")


if __name__ == "__main__":
    main()
