"""``python -m apps.cli.torchrun ARGS``: torchrun for ``--nproc N``, with our one line in place of its report.

torchrun prints a 35-line traceback and failure table when a rank fails, after the rank has said what went wrong in
one line of its own (a user error exits 2, a lost peer 1). Here that report is dropped; only a rank that died
without a word (a signal, a crash) gets one line naming it.
"""

from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

SAID = (1, 2)  # exit codes of a rank that printed its own line (apps.cli.__main__)


def main(argv: list[str]) -> int:
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its per-rank failure logs
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        codes = {rank: f.exitcode for rank, f in e.failures.items()}
        if not any(code in SAID for code in codes.values()):
            rank, failure = min(e.failures.items())
            how = (
                f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with {failure.exitcode}"
            )
            print(f"landscape: error: rank {rank} of the torchrun job {how}", file=sys.stderr)
        return max((c for c in codes.values() if c > 0), default=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
