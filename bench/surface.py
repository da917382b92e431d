"""Grid-evaluation throughput (points/s) for the same model, data and grid, in one run.

Compares, interleaved: loss-landscapes' ``random_plane`` (PyPI ``loss-landscapes``, its own
uniform directions, same grid size and data), a plain in-place loop
(``p.copy_(w0 + a*d1 + b*d2)`` then a forward under ``no_grad``), this toolkit's
:func:`landscape.surfaces.fill_surface` on the model as written (``--plain-forward``), on the
default folded/channels-last view (:mod:`landscape._folding`), and that view under
``torch.compile``. Checks that every path reproduces the plain loop's losses, and reports the
achieved FLOP/s against the rate of the model's costliest convolution run alone.

    OMP_NUM_THREADS=1 python bench/surface.py          # needs: pip install loss-landscapes==3.0.6
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from report import report

from landscape._folding import faster_module
from landscape.data import load_dataset
from landscape.directions import random_directions, target_tensors
from landscape.problem import Problem
from landscape.surfaces import fill_surface
from landscape.trainers import load_checkpoint
from landscape.trainers.train import TrainConfig, train

DEFAULT = "landscape (default: BatchNorm folded, channels-last on CPU)"


def flop_rates(model, fast, x, points_per_s: float, device) -> list[str]:
    """The grid's achieved FLOP/s against the rate of the model's costliest convolution run alone (the limit)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    shapes = {}

    def record(module, inputs, output):
        shapes[module] = (inputs[0].shape, 2 * output.numel() * module.weight[0].numel())

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(record) for m in convs]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    conv, (shape, conv_flops) = max(shapes.items(), key=lambda kv: kv[1][1])
    best = 0.0
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            inp = torch.randn(shape, device=device).contiguous(memory_format=fmt)
            w = conv.weight.detach().contiguous(memory_format=fmt)
            conv._conv_forward(inp, w, conv.bias)
            ts = []
            for _ in range(5):
                tic = time.perf_counter()
                conv._conv_forward(inp, w, conv.bias)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                ts.append(time.perf_counter() - tic)
            best = max(best, conv_flops / min(ts))
    achieved = flops * points_per_s
    return [
        "",
        f"FLOP/s: one point is {flops / 1e9:.3f} GFLOP (torch.utils.flop_counter); the default path achieves "
        f"{achieved / 1e9:.1f} GFLOP/s; the costliest convolution alone ({tuple(shape)} input, best layout) runs at "
        f"{best / 1e9:.1f} GFLOP/s: {achieved / best:.0%} of that limit.",
    ]


class Collect:
    """A writer stand-in that keeps the points in memory (the benchmark times evaluation, not HDF5)."""

    def __init__(self):
        self.points = {}

    def write(self, points):
        self.points.update(points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=21, help="grid is steps x steps")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    import loss_landscapes
    import loss_landscapes.metrics

    device = torch.device(args.device)
    ds = load_dataset(args.dataset)
    x = ((ds.train_x[: args.samples].float() / 255 - 0.3) / 0.3).to(device)
    y = ds.train_y[: args.samples].to(device)
    with tempfile.TemporaryDirectory() as tmp:  # a trained model (loss-landscapes divides by zero on zero-init biases)
        train(
            TrainConfig(
                model=args.model, model_kwargs={"width": args.width}, dataset=args.dataset, epochs=3, device="cpu"
            ),
            tmp,
            progress=False,
            log=lambda line: None,
        )
        model = load_checkpoint(Path(tmp) / "final.pt", device)[0]
    n_params = sum(p.numel() for p in model.parameters())
    d1, d2 = random_directions(target_tensors(model), count=2, seed=0)
    coords = np.linspace(-1, 1, args.steps)
    grid = [(a, b) for b in coords for a in coords]
    problem = Problem(model, (x, y), batch_size=args.samples)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def loss_landscapes_plane():
        metric = loss_landscapes.metrics.Loss(F.cross_entropy, x, y)
        with torch.no_grad():
            return loss_landscapes.random_plane(
                model, metric, distance=1, steps=args.steps, normalization="filter", deepcopy_model=True
            )

    names = [n for n, _ in model.named_parameters()]
    w0 = [p.detach().clone() for p in model.parameters()]
    dd1 = [d1[n].to(device) for n in names]
    dd2 = [d2[n].to(device) for n in names]

    def plain_loop():
        out = []
        with torch.no_grad():
            for a, b in grid:
                for p, w, u, v in zip(model.parameters(), w0, dd1, dd2):
                    p.copy_(w + a * u + b * v)
                out.append(F.cross_entropy(model(x), y).item())
            for p, w in zip(model.parameters(), w0):
                p.copy_(w)
        return np.array(out)

    def ours(forward=None):
        sink = Collect()
        fill_surface(
            problem, [d1, d2], [sink], coords, coords, list(range(len(grid))), ["train"], module=forward, progress=False
        )
        return np.array([sink.points[k]["train_loss"] for k in range(len(grid))])

    with problem.session():
        fast = faster_module(problem)
    assert fast is not None, "the fast path did not apply to this model"
    tic = time.perf_counter()
    compiled = torch.compile(fast)
    ours(compiled)  # includes compilation
    compile_seconds = time.perf_counter() - tic

    variants = {
        "loss-landscapes random_plane": loss_landscapes_plane,
        "plain in-place loop": plain_loop,
        "landscape --plain-forward (the model as written)": ours,
        "landscape (default: BatchNorm folded, channels-last on CPU)": lambda: ours(fast),
        "landscape --compile": lambda: ours(compiled),
    }
    times = {k: [] for k in variants}
    results = {}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            sync()
            t = time.perf_counter()
            results[name] = fn()
            sync()
            times[name].append(time.perf_counter() - t)

    ref = results["plain in-place loop"]
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    lines = [
        f"## surface: {args.model}(width={args.width}) {n_params:,} params, {args.samples} {args.dataset} samples, "
        f"{args.steps}x{args.steps} grid, {dev}; median of {args.rounds} interleaved rounds",
        "",
        "| variant | points/s | x loss-landscapes | max rel. diff vs plain loop |",
        "|---|---|---|---|",
    ]
    base = times["loss-landscapes random_plane"]
    for name, t in times.items():
        speed = len(grid) / statistics.median(t)
        ratio = statistics.median(b / a for a, b in zip(t, base))
        diff = (
            "(own directions)"
            if name.startswith("loss-")
            else f"{np.max(np.abs(results[name] - ref) / np.abs(ref)):.1e}"
        )
        lines.append(f"| {name} | {speed:.1f} | {ratio:.2f} | {diff} |")
    lines.append(
        f"\ntorch.compile: first grid including compilation {compile_seconds:.1f} s "
        f"(default grid: {statistics.median(times[DEFAULT]):.1f} s)"
    )
    lines += flop_rates(model, fast, x, len(grid) / statistics.median(times[DEFAULT]), device)
    report(lines, args.out, f"surface-{device.type}-{args.model}.md")


if __name__ == "__main__":
    main()
