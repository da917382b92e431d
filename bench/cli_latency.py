"""How fast ``landscape --help``, ``--version`` and an option error come back: median wall-clock seconds of N
fresh processes per command, for this checkout and (``--before REV``) an older commit checked out side by side,
interleaved so both see the same machine load.

    python bench/cli_latency.py --before 39b9bc2      # writes bench/results/cli_latency.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report  # bench/report.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    ["--help"],
    ["--version"],
    ["train", "--lr", "-1"],
    ["surface", "--help"],
    ["compare", "--help"],
    ["explore", "--help"],
]


def seconds(source: Path, argv: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "landscape.apps.cli", *argv], cwd=source, capture_output=True)
    return time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=None, help="a commit to compare with (checked out in a temporary folder)")
    ap.add_argument("--repeats", type=int, default=7, help="processes per command and version [%(default)s]")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"now": ROOT}
        if args.before:
            subprocess.run(
                ["git", "worktree", "add", "--detach", tmp + "/before", args.before],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            sources["before"] = Path(tmp) / "before"
        try:
            times = {(name, " ".join(c)): [] for name in sources for c in COMMANDS}
            for _ in range(args.repeats):
                for c in COMMANDS:
                    for name, source in sources.items():  # interleaved: the same load for both
                        times[(name, " ".join(c))].append(seconds(source, c))
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", tmp + "/before"], cwd=ROOT, capture_output=True)
    head = "| command | " + " | ".join(f"{n} (s)" for n in sources) + (" | before / now |" if args.before else " |")
    lines = [
        f"median of {args.repeats} fresh processes (`python -m landscape.apps.cli ...`)",
        "",
        head,
        "|---" * (len(sources) + 1 + bool(args.before)) + "|",
    ]
    for c in COMMANDS:
        key = " ".join(c)
        med = {n: statistics.median(times[(n, key)]) for n in sources}
        ratio = f" | {med['before'] / med['now']:.1f}x" if args.before else ""
        lines.append(f"| `landscape {key}` | " + " | ".join(f"{med[n]:.2f}" for n in sources) + ratio + " |")
    report(lines, args.out, "cli_latency.md")


if __name__ == "__main__":
    main()
