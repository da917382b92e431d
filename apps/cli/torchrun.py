"""``python -m landscape.apps.cli.torchrun ARGS``: torchrun for ``--nproc N``, with our one line in place of its report.

torchrun prints a 35-line traceback and failure table when a rank fails, after the rank has said what went wrong in
one line of its own (a user error, or "another rank failed"). Here that report is dropped; only a job whose ranks
died without a word (a signal, a crash) gets one line naming the first that failed.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from landscape._system.ranks import SAID


def main(argv: list[str]) -> int:
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its per-rank failure logs
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[SAID] = str(Path(tmp) / "said")
        try:
            run(parse_args(argv))
        except ChildFailedError as e:
            codes = [f.exitcode for f in e.failures.values()]
            if not Path(os.environ[SAID]).exists():  # no rank said a word: name the first that failed
                rank, failure = min(e.failures.items())
                code = failure.exitcode
                how = f"was killed by {failure.signal_name()}" if code < 0 else f"exited with {code}"
                print(f"landscape: error: rank {rank} of the torchrun job {how}", file=sys.stderr)
            return max((c for c in codes if c > 0), default=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
