"""Comparison of runs: one numbers table read from the runs' own files, and overlaid figures.

A run is a training run directory (``config.json``, ``metrics.jsonl``, ``final.pt``) with
the analysis files written into it (any ``*.h5``: surfaces, Hessian, sweeps). Each number
in the table is read, not recomputed, from one named file, which ``summary.json`` records.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainers.checkpoint import atomic_write, read_checkpoint
from trainers.train import newest_checkpoint

from .robustness import read_robustness
from .curvature import read_hessian
from .store import Surface, Sweep, file_category, read_attrs, read_surface, read_sweep



@dataclass
class Run:
    """What one run directory holds, found by reading each file's kind."""

    name: str
    path: Path
    config: dict
    metrics: dict  # the last epoch's row, and train_seconds summed over epochs
    metrics_source: Path | None
    checkpoint: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    ignored: list[tuple[str, Path]] = field(default_factory=list)  # (category, file) beyond the first


NUMERIC = ("epoch", "lr", "train_loss", "train_acc", "test_error", "test_nll", "test_ece", "seconds", "world_size")


def check_rows(rows: object, source: str | Path) -> list[dict]:
    """Metric rows as training writes them: objects whose known fields are numbers (or null)."""
    if not isinstance(rows, list):
        raise ValueError(f"{source}: metrics are a {type(rows).__name__}, not a list of rows")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {i} is a JSON {type(row).__name__}, not an object")
        for key in NUMERIC:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{source}: row {i}: {key!r} is {value!r}, not a number")
    return rows


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({getattr(e, 'msg', type(e).__name__)})") from None


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``, checked (one line each)."""
    rows = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i} is not JSON ({e.msg})") from None
    return check_rows(rows, path)


def find_run(path: str | Path, name: str | None = None) -> Run:
    """What a run directory holds; a malformed file in it raises a ValueError naming the file and the problem."""
    path = Path(path)
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is not a run directory")
    ckpt = path / "final.pt" if (path / "final.pt").is_file() else newest_checkpoint(path)
    history, source = [], None
    if (path / "metrics.jsonl").is_file():  # written every epoch: current even while the run trains
        source = path / "metrics.jsonl"
        history = read_metrics(source)
    elif ckpt is not None:
        history, source = check_rows(read_checkpoint(ckpt).get("metrics", []), ckpt), ckpt
    metrics = {**history[-1], "train_seconds": sum(row.get("seconds") or 0 for row in history)} if history else {}
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{path / 'config.json'}: a JSON {type(config).__name__}, not an object")
    run = Run(name or path.name, path, config, metrics, source, ckpt)
    for f in sorted(path.glob("*.h5")):
        category = file_category(f)
        if category is None:
            continue
        if category in run.files:
            run.ignored.append((category, f))
        else:
            run.files[category] = f
    if not run.files and ckpt is None and not history:
        raise ValueError(f"{path}: no metrics, checkpoint or analysis files: not a run directory")
    if not config and run.files:  # a user's own run: what its analysis files say about the problem
        attrs = read_attrs(next(iter(run.files.values())))
        run.config = {"method": attrs.get("label") or attrs.get("method", ""), "model": attrs.get("model", ""),
                      "dataset": attrs.get("dataset", "")}
    return run


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Runs named by their folder, or ``parent/folder`` where two folders share a name."""
    paths = [Path(p) for p in paths]
    names = [p.resolve().name for p in paths]
    return [find_run(p, f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n) for p, n in zip(paths, names)]


def sharpness(sw: Sweep, rho: float, kind: str = "adversarial") -> float:
    """Loss increase at radius ``rho`` over radius 0 (linear interpolation between swept radii); NaN if out of range."""
    if kind not in sw.kinds:
        return float("nan")
    curve = sw.curve(kind)
    ok = np.isfinite(curve)
    radii = sw.radii[ok]
    if not ok.any() or radii.min() > 0 or not radii.min() <= rho <= radii.max():
        return float("nan")
    return float(np.interp(rho, radii, curve[ok]) - np.interp(0.0, radii, curve[ok]))


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    digits: int
    source: str  # which file the number comes from (for summary.json)


def columns(rho: float) -> list[Column]:
    return [
        Column("test_error", "test error (%)", 2, "metrics"),
        Column("test_nll", "test NLL", 4, "metrics"),
        Column("test_ece", "test ECE", 4, "metrics"),
        Column("train_seconds", "train time (s)", 1, "metrics"),
        Column("lambda_max", "top Hessian eigenvalue", 3, "hessian"),
        Column("trace", "Hessian trace", 2, "hessian"),
        Column("sharpness", f"sharpness (rho={rho:g})", 4, "sweep"),
        Column("corruption_error", "corruption error (%)", 2, "robustness"),
        Column("mce", "mCE", 3, "robustness"),
    ]


def summary_row(run: Run, rho: float) -> dict:
    """The table's numbers for one run (None where the run lacks the file)."""
    row = {"run": run.name, **{k: str(run.config.get(k) or "") for k in ("method", "model", "dataset")},
           "epochs": run.metrics.get("epoch", np.nan)}
    for key in ("test_error", "test_nll", "test_ece", "train_seconds"):
        value = run.metrics.get(key)
        row[key] = float(value) if value is not None else float("nan")
    row["lambda_max"] = row["trace"] = float("nan")
    if "hessian" in run.files:
        h = read_hessian(run.files["hessian"], vectors=False)
        if h.eigenvalues is not None and len(h.eigenvalues):
            row["lambda_max"] = float(h.eigenvalues[0])
        if h.trace is not None:
            row["trace"] = float(h.trace)
    row["sharpness"] = sharpness(read_sweep(run.files["sweep"]), rho) if "sweep" in run.files else float("nan")
    row["corruption_error"] = row["mce"] = float("nan")
    if "robustness" in run.files:
        r = read_robustness(run.files["robustness"])
        row["corruption_error"], row["mce"] = r.mean("error"), r.mce()
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}  # JSON-safe


def _cell(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def html_table(head: list[str], body: list[list[str]]) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in row)

    return (f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>"
            + "".join(f"<tr>{cells('td', row)}</tr>" for row in body) + "</tbody></table>")


def summary_table(rows: list[dict], cols: list[Column]) -> tuple[list[str], list[list[str]]]:
    """(header, formatted rows) of the comparison table."""
    return (["run", "method"] + [c.header for c in cols],
            [[r["run"], r["method"]] + [_cell(r[c.key], c.digits) for c in cols] for r in rows])


def robustness_tables(runs: list[Run]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per-severity error and ECE pooled over corruptions, one row per run with a robustness file: (title, head, body)."""
    robust = [(r.name, read_robustness(r.files["robustness"])) for r in runs if "robustness" in r.files]
    if not robust:
        return []
    severities = sorted({s for _, rb in robust for s in rb.severities})
    out = []
    for metric, title, digits in (("error", "test error (%)", 2), ("ece", "ECE", 4)):
        body = []
        for name, rb in robust:
            by = dict(zip(rb.severities, rb.by_severity(metric)))
            body.append([name, _cell(rb.clean(metric), digits)] + [_cell(by.get(s), digits) for s in severities]
                        + [_cell(rb.mean(metric), digits)])
        out.append((f"Robustness: {title} per severity, pooled over corruptions",
                    ["run", "clean"] + [f"severity {s}" for s in severities] + ["all corrupted"], body))
    return out


def overlay_figures(runs: list[Run], lib, *, log: bool = False, calibration: dict[str, dict] | None = None,
                    max_grid: int | None = None) -> dict[str, object]:
    """``{name: figure}`` of every overlay the runs' files support (``lib``: plot_mpl or plot_plotly);
    ``max_grid`` reads 2-D surfaces strided for the browser."""
    figs: dict[str, object] = {}
    slices = [(r.name, _slice(r)) for r in runs if "surface_1d" in r.files or "surface_2d" in r.files]
    if slices:
        figs["slices"] = lib.compare_slices(slices, log=log)
    surfaces = [(r.name, read_surface(r.files["surface_2d"], max_points=max_grid)) for r in runs if "surface_2d" in r.files]
    if surfaces:
        figs["surfaces"] = lib.compare_surfaces(surfaces, log=log)
    sweeps = [(r.name, read_sweep(r.files["sweep"])) for r in runs if "sweep" in r.files]
    if sweeps:
        figs["sweeps"] = lib.compare_sweeps(sweeps, log=log)
    spectra = [(r.name, read_hessian(r.files["hessian"], vectors=False).arrays()) for r in runs if "hessian" in r.files]
    if spectra:
        figs["spectra"] = lib.compare_spectra(spectra)
    robust = [(r.name, read_robustness(r.files["robustness"])) for r in runs if "robustness" in r.files]
    if robust:
        figs["robustness"] = lib.robustness_by_severity(robust)
        rel = [(name, rb) for name, rb in robust if rb.has_baseline]
        if rel:
            names = rel[0][1].corruptions
            table = np.array([[*rb.ce(), rb.relative_clean_error(), rb.mce()] for _, rb in rel if rb.corruptions == names])
            figs["corruption_errors"] = lib.corruption_table(
                [name for name, rb in rel if rb.corruptions == names], [*names, "clean", "mCE"], table, center=1.0,
                title=f"corruption error relative to the baseline ({rel[0][1].attrs.get('baseline_method', 'baseline')})")
    if calibration:
        figs["calibration"] = lib.reliability_diagram(list(calibration.items()), title="reliability (test predictions)")
    return figs


def _slice(run: Run) -> Surface:
    if "surface_1d" in run.files:
        return read_surface(run.files["surface_1d"])
    return read_surface(run.files["surface_2d"]).slice("x", 0.0)


CAPTIONS = {
    "slices": "Loss and accuracy along the x direction through each minimum (1-D surface files, else the y=0 row of the "
              "2-D surface); train solid, test dashed.",
    "surfaces": "2-D loss surfaces, one colour scale for all runs (log-spaced levels).",
    "sweeps": "Loss against perturbation radius, one panel per kind, ±1 std over trials.",
    "spectra": "Top Hessian eigenvalues (and the SLQ spectral density where computed).",
    "robustness": "Test error and ECE under corruption, pooled over corruptions per severity (0 = clean); the DAMP "
                  "paper's evaluation.",
    "corruption_errors": "Corruption error CE_c = sum_s E(c,s) / sum_s E_baseline(c,s) per corruption, the clean error "
                         "ratio, and mCE (mean CE over the common corruptions); below 1 (blue) is more robust than the "
                         "baseline.",
    "calibration": "Reliability diagram of the final checkpoints' test predictions (15 equal-width confidence bins).",
}


def write_report(runs: list[Run], out: str | Path, *, rho: float = 0.1, formats: tuple[str, ...] = ("png",),
                 log: bool = False, calibration: dict[str, dict] | None = None, intro: str = "") -> Path:
    """Write ``report.md`` (table + static figures), ``report.html`` (one self-contained page) and ``summary.json``."""
    from . import plot_mpl, plot_plotly  # here: the table functions need no plotting libraries

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = columns(rho)
    rows = [summary_row(r, rho) for r in runs]
    md_figs = []
    for name, fig in overlay_figures(runs, plot_mpl, log=log, calibration=calibration).items():
        for fmt in formats:
            atomic_write(out / f"{name}.{fmt}", lambda tmp, fig=fig, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
        plot_mpl.plt.close(fig)
        md_figs.append(f"### {name}\n\n{CAPTIONS[name]}\n\n![{name}]({name}.{formats[0]})\n")
    sources = _sources(runs)
    title = "Comparison of " + ", ".join(r.name for r in runs)
    table = summary_table(rows, cols)
    robust = robustness_tables(runs)
    md = (f"# {title}\n\n{intro}\n\n{markdown_table(*table)}\n\n{_notes(rho)}\n\n"
          + "".join(f"**{t}**\n\n{markdown_table(h, b)}\n\n" for t, h, b in robust)
          + f"{_sources_md(sources)}\n\n## Figures\n\n" + "\n".join(md_figs))
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(md))
    parts = []
    for i, (name, fig) in enumerate(overlay_figures(runs, plot_plotly, log=log, calibration=calibration).items()):
        parts.append(f"<h3>{name}</h3><p>{html.escape(CAPTIONS[name])}</p>"
                     + fig.to_html(full_html=False, include_plotlyjs=i == 0, default_height=420))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{html_table(*table)}"
            f"<p>{html.escape(_notes(rho))}</p>"
            + "".join(f"<h3>{html.escape(t)}</h3>{html_table(h, b)}" for t, h, b in robust)
            + f"<h2>Figures</h2>{''.join(parts)}</body></html>")
    atomic_write(out / "report.html", lambda tmp: tmp.write_text(page))
    summary = {"rho": rho, "columns": {c.key: {"header": c.header, "from": c.source} for c in cols}, "rows": rows,
               "sources": sources}
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return out


def _notes(rho: float) -> str:
    return ("Test error, NLL and ECE (15 bins) are the last epoch's evaluation (metrics.jsonl), train time "
            "the sum of its epochs' training time; the Hessian "
            "columns come from each run's Hessian file (Lanczos top eigenvalue, trace estimate) and sharpness from its "
            f"sweep file: adversarial loss at radius {rho:g} minus the loss at radius 0 (linearly interpolated between "
            "swept radii). Corruption error is the mean test error over every corruption and severity of the run's "
            "robustness file, mCE its mean corruption error relative to the baseline stored there. — marks a number "
            "the run has no file for.")


def _sources(runs: list[Run]) -> dict[str, dict[str, str]]:
    return {r.name: {"metrics": str(r.metrics_source) if r.metrics_source else "",
                     **{k: str(v) for k, v in r.files.items()}} for r in runs}


def _sources_md(sources: dict[str, dict[str, str]]) -> str:
    return markdown_table(["run", "files"], [[name, ", ".join(f"`{p}`" for p in files.values() if p)]
                                             for name, files in sources.items()])


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}"
       "th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}")
