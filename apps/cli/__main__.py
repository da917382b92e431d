"""``landscape``: one command, one subcommand per job; each module adds its parser and runs it."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import NoReturn

from landscape import __version__

from .commands import COMMANDS

USER_ERRORS = (ValueError, OSError)  # bad input, missing or unwritable files, a full disk: one line, exit 2


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other user mistake (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module (None: every command's) is imported, the other commands are listed
    by name and help, so ``--help`` and option errors come back without loading torch for nothing."""
    parser = Parser(
        prog="landscape",
        description="Train flat-minima methods and analyse their loss landscapes.",
        epilog="examples:\n  landscape demo --out runs/demo\n"
        "  landscape train --method sam --epochs 10 --out runs/sam\n"
        "  landscape train --method sam --seeds 0-2 --out runs/sam      # one run per seed\n"
        "  landscape surface runs/sam/final.pt --x -1:1:21 --y -1:1:21 --out runs/sam/surface.h5\n"
        "  landscape surface --problem my_problem.py:problem --x -1:1:21 --out mine.h5     # your own model\n"
        "  landscape hessian runs/sam/final.pt --top-k 5 --trace 99 --out runs/sam/hessian.h5\n"
        "  landscape sweep runs/sam/final.pt --radii 0:1:11 --out runs/sam/sweep.h5\n"
        "  landscape robustness runs/sam/final.pt --baseline runs/erm/final.pt --out runs/sam/robustness.h5\n"
        "  landscape compare runs/erm/seed* runs/sam/seed* --out report/\n"
        "  landscape explore runs\n\n"
        "Run 'landscape COMMAND --help' for a command's options. Set LANDSCAPE_DEBUG=1 for tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {m for name, (m, _) in COMMANDS.items() if command is None or name == command}
    for name, (module, text) in COMMANDS.items():
        if name in sub.choices:
            continue
        if module in wanted:
            importlib.import_module(f"landscape.apps.cli.{module}").add_parser(sub)  # adds every command of the module
        else:
            sub.add_parser(name, help=text)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The subcommand asked for: the first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


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


KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=(True\b)?")


def in_flags(text: str, parser: argparse.ArgumentParser, command: str) -> str:
    """A library message in the command line's words: the library names keyword arguments (``resume=True``,
    ``data_root=``, ``rho=0.05``), the user typed flags (``--resume``, ``--data-root``, ``--rho 0.05``)."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command_parser = sub.choices.get(command) if sub is not None else None
    flags = {
        action.dest.removeprefix("hp_"): next(o for o in action.option_strings if o.startswith("--"))
        for action in (command_parser._actions if command_parser is not None else [])
        if any(o.startswith("--") for o in action.option_strings)
    }
    flags.update({"model_kwargs": "--model-arg", "splits": "--split", "x": "--x", "y": "--y"})

    def flag(m: re.Match) -> str:
        name = flags.get(m[1])
        if name is None:
            return m[0]
        follows = text[m.end() : m.end() + 1]
        return name if m[2] or not follows or follows in " ,;:)" else f"{name} "

    return KEYWORD.sub(flag, text)


def main(argv: list[str] | None = None) -> int:
    raw = join_negative_ranges(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(command_of(raw) or "")
    try:
        args = parser.parse_args(raw)
    except SystemExit as e:  # --help, or a bad option (its one line is printed): the exit code, returned
        return int(e.code or 0)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    args.argv = raw
    from landscape._system.ranks import close_group, lost_peer, say, stop_when_terminated, stopped_message

    stop_when_terminated(args.command)
    try:
        code = args.run(args) or 0
        close_group()  # a torchrun job's process group: every rank is done
        return code
    except USER_ERRORS as e:
        if os.environ.get("LANDSCAPE_DEBUG"):
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank raises it: say it once
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            say(f"landscape {args.command}: error: {in_flags(text, parser, args.command)}")
        return 2
    except RuntimeError as e:
        if not lost_peer(e) or os.environ.get("LANDSCAPE_DEBUG"):
            raise
        say(stopped_message(args.command))
        return 1
    except KeyboardInterrupt:
        print(
            f"landscape {args.command}: interrupted (finished results are saved; rerun with --resume)", file=sys.stderr
        )
        return 130
    finally:
        close_group(wait=False)  # after an error (a no-op once closed)


if __name__ == "__main__":
    raise SystemExit(main())
