"""How long the explorer's scan takes on a hostile HDF5 file: 100,000 links in one group (issue 27).

Times ``landscape.io.inspect_file`` (HDF5's own link iteration, each object once, at most 200,000 links) against
the walk it replaced (h5py's ``visititems_links`` with an object lookup per hard link), interleaved, on files of
soft links, dangling soft links and hard links. Usage: ``python bench/hdf5_scan.py [--links 100000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from report import report

from landscape.io import inspect_file


def crafted(path: Path, how: str, links: int) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "surface"
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        g = f.create_group("g")
        for i in range(links):
            g[f"l{i}"] = (
                f["xcoordinates"] if how == "hard" else h5py.SoftLink("/xcoordinates" if how == "soft" else f"/x{i}")
            )


def old_walk(path: Path) -> None:
    """The walk before issue 27: h5py's visititems_links, looking every hard link's object up."""
    with h5py.File(path, "r", locking=False) as f:

        def visit(name: str, link: object) -> None:  # None: go on (a value would stop the walk)
            if isinstance(link, h5py.HardLink):
                f.get(name)

        f.visititems_links(visit)


def seconds(fn, path: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        tic = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=1, help="timed repeats of each walk (median)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    lines = [f"| file ({args.links:,} links in one group) | h5py visititems_links (s) | inspect_file (s) | ratio |",
             "|---|---|---|---|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("soft", "dangling", "hard"):
            path = Path(tmp) / f"{how}.h5"
            crafted(path, how, args.links)
            old, new = seconds(old_walk, path, args.rounds), seconds(inspect_file, path, args.rounds)
            lines.append(
                f"| {how} links, {path.stat().st_size / 2**20:.1f} MiB | {old:.2f} | {new:.2f} | {old / new:.0f}x |"
            )
    report(lines, args.out, "hdf5_scan.md")


if __name__ == "__main__":
    main()
