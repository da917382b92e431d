"""The explorer's catalogue at the scale of a hyper-parameter sweep: the first listing and a rescan of a folder of N
runs with K result files each (issue 26's target: 1,000 runs and 5,000 files listed in under 2 s; a rescan opens
only the files that changed).

The runs are generated cheaply: a ``config.json``, one ``metrics.jsonl`` row, and K small 1-D surface files each.

    python bench/explorer_scale.py                      # 1,000 runs x 5 files
    python bench/explorer_scale.py --runs 200 --files 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from report import report

import landscape.apps.explorer.catalog as catalog_module
from landscape.apps.explorer.catalog import SCAN_BUDGET, Catalog


def make(root: Path, runs: int, files: int) -> None:
    for i in range(runs):
        run = root / f"sweep_{i // 10:03d}" / f"run{i:04d}"
        run.mkdir(parents=True)
        config = {"method": "erm", "seed": i % 3, "lr": 0.1 * (1 + i // 30), "model": "small_cnn", "dataset": "digits"}
        (run / "config.json").write_text(json.dumps(config))
        row = {"epoch": 1, "train_loss": 0.1, "test_error": 1.0, "test_nll": 0.05, "test_ece": 0.01, "seconds": 1.0}
        (run / "metrics.jsonl").write_text(json.dumps({**row, "steps": 10}) + "\n")
        for j in range(files):
            with h5py.File(run / f"line_{j}.h5", "w") as f:
                f.attrs.update(kind="surface", schema_version=1, values=["train_loss"])
                f["xcoordinates"] = np.linspace(-1, 1, 5)
                f["train_loss"] = np.ones(5)
                f["computed"] = np.ones(5, bool)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--files", type=int, default=5)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    opened: list[str] = []
    real = catalog_module.inspect_file

    def counted(path):
        opened.append(str(path))
        return real(path)

    catalog_module.inspect_file = counted  # counts the files a scan opens
    rows = []

    def timed(label: str, scan) -> dict:
        opened.clear()
        tic = time.perf_counter()
        snap = scan()
        rows.append(
            f"| {label} | {time.perf_counter() - tic:.2f} | {len(snap['runs'])} | {len(snap['files'])} | "
            f"{snap['pending']} | {len(opened)} |"
        )
        return snap

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make(root, args.runs, args.files)
        catalog = Catalog(root)
        start = time.perf_counter()
        snap = timed(
            f"first listing (new files opened for at most {SCAN_BUDGET:g} s, the rest in the background)",
            lambda: catalog.current(0)[0],
        )
        while snap["pending"]:  # a browser polls every 3 s; here every second
            time.sleep(1.0)
            snap = timed(
                f"poll at {time.perf_counter() - start:.1f} s: {snap['pending']} files were left",
                lambda: catalog.current(0)[0],
            )
        timed("rescan, nothing changed", lambda: catalog.scan(SCAN_BUDGET))
        touched = root / "sweep_000" / "run0000" / "line_0.h5"
        with h5py.File(touched, "a") as f:
            f.attrs["note"] = "changed"
        timed("rescan, one file changed", lambda: catalog.scan(SCAN_BUDGET))
        timed("everything at once (a new catalogue, no budget)", lambda: Catalog(root).scan())
    lines = [
        f"{args.runs} runs, {args.runs * args.files} result files",
        "",
        "| scan | seconds | runs listed | files listed | files left for the next scan | files opened |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    report(lines, args.out, "explorer_scale.md")


if __name__ == "__main__":
    main()
