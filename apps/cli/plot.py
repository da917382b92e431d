"""``landscape plot``: figures of surface, Hessian and sweep files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from landscape._jobs import EvalOptions, calibration
from landscape._system.files import write_files
from landscape.io import Surface, read
from landscape.plots import mpl as plot_mpl
from landscape.plots import plotly as plot_plotly
from landscape.plots.catalog import figure_file, figures_for
from landscape.plots.vtp import surface_to_vtp

from .commands import help_of
from .numbers import number

EXAMPLES = """examples:
  landscape plot runs/demo/sam/surface_2d.h5 --out figures/
  landscape plot runs/demo/*/sweep.h5 runs/demo/*/hessian.h5 --out figures/ --format png,pdf
  landscape plot sam_1d.h5 --log --out figures/
  landscape plot runs/demo/sam/surface_2d.h5 --vtp --zmax 10 --out figures/     # + ParaView .vtp
  landscape plot runs/demo/sam/final.pt --out figures/        # reliability diagram of its test predictions

Surfaces: 1-D loss and accuracy; 2-D contour, filled contour, heat map and 3-D surface (with
the trajectory of a PCA file). Hessian files: top eigenvalues and spectral density. Sweeps:
loss against radius per kind. Robustness files: error/ECE per severity, the corruption x
severity error table and, with a baseline, CE per corruption. Checkpoints: the reliability diagram (calibration) of the
test split's predictions. loss-landscape's own surface files work too."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help=help_of("plot"),
        description="Draw every figure an analysis file supports into --out.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="analysis files (.h5) and checkpoints (.pt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--format", default="png", help="comma-separated: png, pdf, svg, html (interactive plotly) [%(default)s]"
    )
    p.add_argument("--log", action="store_true", help="log-scale losses")
    p.add_argument("--vtp", action="store_true", help="also export 2-D surfaces as .vtp for ParaView")
    p.add_argument("--zmax", type=number(float), default=None, help="with --vtp: clip heights at this value")
    p.add_argument("--device", default="auto", help="for checkpoints' predictions [%(default)s]")
    p.set_defaults(run=run)


def plot_data(path: Path, device: str = "auto"):
    """What a file's figures need, read once: its result (:func:`landscape.io.read`), or for a checkpoint the
    calibration of its test predictions."""
    if path.suffix == ".pt":
        rel = calibration(path, EvalOptions(device=device, progress=False))[1]
        return (f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem, rel)
    data = read(path)
    if (
        isinstance(data, Surface)
        and not np.isfinite(np.concatenate([v.ravel() for v in data.values.values()] or [np.zeros(0)])).any()
    ):
        raise ValueError(f"{path}: no finite value to draw (every point diverged or is not computed yet)")
    return data


def run(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg", "html")]
    if bad or not formats:
        raise ValueError(f"--format: unsupported {', '.join(bad) or '(none)'}; use png, pdf, svg, html")
    static = [f for f in formats if f != "html"]
    if args.zmax is not None and not args.vtp:
        raise ValueError("--zmax clips the heights of --vtp exports: add --vtp")
    out = Path(args.out)
    for name in args.files:
        path = Path(name)
        if path.is_dir():
            raise IsADirectoryError(f"{name!r} is a folder: give the analysis files (.h5) or checkpoints (.pt) in it")
        if not path.is_file():
            raise FileNotFoundError(f"{name!r} does not exist")
        stem = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
        data = plot_data(path, args.device)
        if args.vtp and not (isinstance(data, Surface) and data.dim == 2):
            raise ValueError(f"--vtp exports 2-D surfaces; {name} is not one")
        files: dict[str, bytes] = {}  # one file's figures, written together once all are drawn
        if static:
            for suffix, fig in figures_for(data, args.log, plot_mpl).items():
                for fmt in static:
                    files[figure_file(stem, suffix, fmt)] = plot_mpl.to_bytes(fig, fmt)
        if args.vtp:
            for value in [v for v in data.values if v.endswith("_loss")]:
                files[figure_file(stem, value, "vtp")] = surface_to_vtp(
                    data, value, zmax=args.zmax, log=args.log
                ).encode()
        if "html" in formats:  # standalone: plotly.js embedded, works offline
            for suffix, fig in figures_for(data, args.log, plot_plotly).items():
                files[figure_file(stem, suffix, "html")] = fig.to_html(include_plotlyjs=True, full_html=True).encode()
        write_files(out, files)
        for target in files:
            print(f"wrote {out / target}")
    return 0
