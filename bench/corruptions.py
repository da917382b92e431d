"""Cost of generating the corruption suite: milliseconds per image for each corruption (32x32 images, and
8x8 digits through the 32 px round trip), and a whole split with 1 and 2 worker processes.

    python bench/corruptions.py                 # writes bench/results/corruptions.md
"""

from __future__ import annotations

import argparse
import time

from report import report

from landscape.data import load_dataset
from landscape.data.corruptions import ALL, corrupt_images


def per_image_ms(images, name: str, severity: int) -> float:
    tic = time.perf_counter()
    corrupt_images(images, name, severity)
    return 1000 * (time.perf_counter() - tic) / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64, help="images per timing [%(default)s]")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    big, small = load_dataset("digits32").test_x[: args.images], load_dataset("digits").test_x[: args.images]
    for name in ALL:  # warm up: imports, numba compilation, frost's image files
        corrupt_images(big[:2], name, 3)
    lines = ["| corruption | 3x32x32 ms/image (severity 3) | 1x8x8 via 32 px ms/image |", "|---|---|---|"]
    total_big = total_small = 0.0
    for name in ALL:
        b, s = per_image_ms(big, name, 3), per_image_ms(small, name, 3)
        total_big, total_small = total_big + b, total_small + s
        lines.append(f"| {name} | {b:.2f} | {s:.2f} |")
    lines.append(f"| **all 19** | **{total_big:.1f}** | **{total_small:.1f}** |")
    split = load_dataset("digits").test_x
    times = {}
    for workers in (1, 2, 1, 2):  # interleaved; the pool is started before timing
        corrupt_images(split[:128], "glass_blur", 1, workers=workers)
        tic = time.perf_counter()
        corrupt_images(split, "glass_blur", 2, workers=workers)
        times.setdefault(workers, []).append(time.perf_counter() - tic)
    lines += [
        "",
        f"glass_blur (the slowest) on the {len(split)} digits test images, best of 2: "
        f"1 worker {min(times[1]):.2f} s, 2 workers {min(times[2]):.2f} s "
        f"(ratio {min(times[1]) / min(times[2]):.2f})",
    ]
    report(lines, args.out, "corruptions.md")


if __name__ == "__main__":
    main()
