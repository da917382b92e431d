"""argparse types for numeric options: checked when the command line is parsed, each with its bound in the message."""

from __future__ import annotations

import argparse
import math
from typing import Callable


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
