"""argparse types for numeric options: checked when the command line is parsed, each with its bound in the message."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, Callable, Collection


def number(
    kind: type = float, *, least: float | None = None, most: float | None = None, above: float | None = None
) -> Callable[[str], int | float]:
    """A finite ``kind`` (int or float) with ``least <= value <= most`` and ``value > above``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if least is not None and value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least:g}, got {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be <= {most:g}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = number(int, least=1)  # epochs, samples, batch sizes, probes, workers, ...
INDEX = number(int, least=0)  # seeds, top-k, matvecs
NONNEGATIVE = number(float, least=0)  # learning rates, radii, decays
POSITIVE = number(float, above=0)
PORT = number(int, least=1, most=65535)


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type made of a parser that raises ValueError: the whole list is checked when the command line is
    parsed, before any work, and the parser's message becomes the option's one-line error."""

    def run(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            # argparse names the option itself: drop the parser's own name for it
            raise argparse.ArgumentTypeError(re.sub(r"^(--[\w-]+:?\s+|[a-z_]+=)", "", str(e))) from None

    run.__name__ = parse.__name__
    return run


def names(choices: Collection[str]) -> Callable[[str], list[str]]:
    """A comma-separated list of distinct names from ``choices``, at least one (``--methods erm,sam``)."""

    def parse(text: str) -> list[str]:
        found = [n.strip() for n in text.split(",")]
        if not text.strip() or "" in found:
            raise argparse.ArgumentTypeError(f"expected comma-separated names from {', '.join(choices)}, got {text!r}")
        unknown = [n for n in found if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        if len(set(found)) != len(found):
            raise argparse.ArgumentTypeError(f"a name is given twice in {text!r}")
        return found

    parse.__name__ = "list"
    return parse
