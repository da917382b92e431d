"""``landscape``: one command, one subcommand per job; each module adds its parser and runs it."""
from __future__ import annotations

import argparse
import os
import re
import sys

from trainers.distributed import lost_peer, stop_when_terminated, stopped_message

from . import compare, demo, explore, hessian, plot, robustness, surface, sweep, train

COMMANDS = [train, surface, hessian, sweep, robustness, plot, compare, explore, demo]
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Train flat-minima methods and analyse their loss landscapes.",
        epilog="examples:\n  landscape demo --out runs/demo\n  landscape train --method sam --epochs 10 --out runs/sam\n"
               "  landscape surface runs/sam/final.pt --x -1:1:21 --y -1:1:21 --out runs/sam/surface.h5\n"
               "  landscape surface --problem my_problem.py:problem --x -1:1:21 --out mine.h5     # your own model\n"
               "  landscape hessian runs/sam/final.pt --top-k 5 --trace 99 --out runs/sam/hessian.h5\n"
               "  landscape sweep runs/sam/final.pt --radii 0:1:11 --out runs/sam/sweep.h5\n"
               "  landscape robustness runs/sam/final.pt --baseline runs/erm/final.pt --out runs/sam/robustness.h5\n"
               "  landscape compare runs/erm runs/sam --out report/\n"
               "  landscape explore runs\n\n"
               "Run 'landscape COMMAND --help' for a command's options. Set LANDSCAPE_DEBUG=1 for tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


RANGE_FLAGS = ("--x", "--y", "--radii")
NEGATIVE_RANGE = re.compile(r"^-[\d.]+(e-?\d+)?:")


def join_negative_ranges(argv: list[str]) -> list[str]:
    """``--x -1:1:51`` -> ``--x=-1:1:51`` (argparse would take ``-1:1:51`` for an option)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in RANGE_FLAGS and i + 1 < len(argv) and NEGATIVE_RANGE.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = join_negative_ranges(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(raw)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    args.argv = raw
    stop_when_terminated(args.command)
    try:
        return args.run(args) or 0
    except USER_ERRORS as e:
        if os.environ.get("LANDSCAPE_DEBUG"):
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank raises it: say it once
            print(f"landscape {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not lost_peer(e) or os.environ.get("LANDSCAPE_DEBUG"):
            raise
        print(stopped_message(args.command), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"landscape {args.command}: interrupted (finished results are saved; rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
