"""``landscape compare``: several runs side by side, as a Markdown report and one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .commands import help_of
from .numbers import POSITIVE

EXAMPLES = """examples:
  landscape compare runs/demo/erm runs/demo/sam runs/demo/amp --out runs/demo/report
  landscape compare runs/c10-* --out report/ --rho 0.05 --format png,pdf
  landscape compare runs/erm runs/sam --out report/ --no-calibration     # no model evaluation at all

Each RUN_DIR is a training run directory; the analysis files written into it (any *.h5:
surfaces, Hessian, sweeps) are found by their kind. Writes REPORT_DIR/report.md (table and
figures), report.html (the same, interactive, plotly.js embedded: opens offline),
summary.json (the table's numbers at full precision and the file each came from) and
the figures: slices, surfaces (one colour scale), sweeps, spectra, calibration."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help=help_of("compare"),
        description="Put several runs side by side: test error, NLL, ECE, top Hessian eigenvalue, trace "
        "and sharpness read from each run's files, and overlaid figures.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report")
    p.add_argument("--rho", type=POSITIVE, default=None, help="radius of the sharpness column [0.1]")
    p.add_argument(
        "--baseline",
        default=None,
        metavar="GROUP",
        help="the group (or method) the others are compared with seed by seed [erm, else the first]",
    )
    p.add_argument(
        "--format", default="png", help="static figure formats, comma-separated: png, pdf, svg [%(default)s]"
    )
    p.add_argument("--log", action="store_true", help="log-scale losses")
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the reliability diagram (it evaluates each checkpoint on the test split)",
    )
    p.add_argument("--device", default="auto", help="for the calibration predictions [%(default)s]")
    p.add_argument("--data-root", default=None, help="dataset root, if not the one the runs were trained with")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape._jobs import EvalOptions, calibration
    from landscape.report import SHARPNESS_RHO, write_report
    from landscape.runs import find_runs

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ValueError(f"--format: unsupported {', '.join(bad) or '(none)'}; use png, pdf, svg")
    rho = SHARPNESS_RHO if args.rho is None else args.rho
    runs = find_runs(args.runs)
    for r in runs:
        for category, f in r.ignored:
            print(
                f"[compare] {r.name}: ignoring {f.name} (one {category} file per run: using {r.files[category].name})"
            )
        for f, reason in r.problems:  # its column shows a dash: say why
            print(f"[compare] {r.name}: left out {f.name}: {reason}", file=sys.stderr)
    curves = None
    if not args.no_calibration:
        opts = EvalOptions(device=args.device, data_root=args.data_root, progress=False)
        curves = {r.name: calibration(r.checkpoint, opts)[1] for r in runs if r.checkpoint is not None}
    out = write_report(
        runs, args.out, rho=rho, formats=formats, log=args.log, calibration=curves, baseline=args.baseline
    )
    print(f"wrote {Path(out) / 'report.md'}\nwrote {Path(out) / 'report.html'}\nwrote {Path(out) / 'summary.json'}")
    return 0
