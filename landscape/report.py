"""Comparison of runs: one numbers table read from the runs' own files, and overlaid figures.

A run is a training run directory (``config.json``, ``metrics.jsonl``, ``final.pt``) with
the analysis files written into it (any ``*.h5``: surfaces, Hessian, sweeps). Each number
in the table is read, not recomputed, from one named file, which ``summary.json`` records.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection

import numpy as np

from landscape._system.files import json_text, write_files

from .correlation import correlation_table
from .groups import (
    CURVATURE,
    HISTORY,
    Group,
    curvature_curves,
    describe,
    group_runs,
    history_curves,
    mean_curves,
    mean_spectrum,
    mean_surface,
    mean_sweep,
    paired,
    pooled_bins,
)
from .io import Surface, Sweep, read_surface, read_sweep
from .io.files import CONNECTIVITY, read_attrs
from .io.hessian import read_hessian
from .io.robustness import read_robustness, severity_curves
from .runs import Run, find_runs

if TYPE_CHECKING:
    from .plots import Renderer


def sweep_sharpness(sw: Sweep, rho: float, kind: str = "adversarial") -> float:
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
    """The comparison's columns: accuracy and calibration, the flatness measures, robustness, then the wall-clock
    cost per step (machine-dependent: a note, not a headline)."""
    return [
        Column("test_error", "test error (%)", 2, "metrics"),
        Column("test_nll", "test NLL", 4, "metrics"),
        Column("test_ece", "test ECE", 4, "metrics"),
        Column("lambda_max", "top Hessian eigenvalue", 3, "hessian"),
        Column("trace", "Hessian trace", 2, "hessian"),
        Column("sharpness", f"sharpness (rho={rho:g})", 4, "sweep"),
        Column("corruption_error", "corruption error (%)", 2, "robustness"),
        Column("mce", "mCE", 3, "robustness"),
        Column("ms_per_step", "ms/step (wall-clock)", 1, "metrics"),
    ]


SHARPNESS_RHO = 0.1  # the sharpness column's default radius (compare --rho, the demo, the explorer)
PAIRED = ("test_error", "sharpness", "lambda_max", "corruption_error")  # compared seed by seed with the baseline


def summary_row(run: Run, rho: float) -> dict:
    """The table's numbers for one run (None where the run lacks the file)."""
    row = {
        "run": run.name,
        **{k: str(run.config.get(k) or "") for k in ("method", "model", "dataset")},
        "seed": run.config.get("seed"),
        "epochs": run.metrics.get("epoch", np.nan),
    }
    for key in ("test_error", "test_nll", "test_ece", "train_seconds", "ms_per_step"):
        value = run.metrics.get(key)
        row[key] = float(value) if value is not None else float("nan")
    row["lambda_max"] = row["trace"] = float("nan")
    if "hessian" in run.files:
        h = read_hessian(run.files["hessian"], vectors=False)
        if h.eigenvalues is not None and len(h.eigenvalues):
            row["lambda_max"] = float(h.eigenvalues[0])
        if h.trace is not None:
            row["trace"] = float(h.trace)
    row["sharpness"] = sweep_sharpness(read_sweep(run.files["sweep"]), rho) if "sweep" in run.files else float("nan")
    row["corruption_error"] = row["mce"] = float("nan")
    if "robustness" in run.files:
        r = read_robustness(run.files["robustness"])
        row["corruption_error"], row["mce"] = r.mean("error"), r.mce()
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}  # JSON-safe


def _cell(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def spread_cell(stat: dict, digits: int) -> str:
    """``mean ± std`` (just the mean for one seed, — for none)."""
    if stat["mean"] is None:
        return "—"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else "")


def paired_cell(p: dict, digits: int) -> str:
    """``difference [95 % interval] (n)`` of a paired comparison."""
    if p["mean"] is None:
        return "—"
    ci = f" [{p['ci95'][0]:+.{digits}f}, {p['ci95'][1]:+.{digits}f}]" if p["ci95"] else ""
    return f"{p['mean']:+.{digits}f}{ci} (n={p['n']})"


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def html_table(head: list[str], body: list[list[str]]) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in row)

    return (
        f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>"
        + "".join(f"<tr>{cells('td', row)}</tr>" for row in body)
        + "</tbody></table>"
    )


def summary_table(
    rows: list[dict], cols: list[Column], group_of: dict[str, str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, formatted rows) of the per-run table."""
    group_of = group_of or {}
    return (
        ["run", "group" if group_of else "method", "seed"] + [c.header for c in cols],
        [
            [r["run"], group_of.get(r["run"], r["method"]), "—" if r.get("seed") is None else str(r["seed"])]
            + [_cell(r[c.key], c.digits) for c in cols]
            for r in rows
        ],
    )


def group_stats(groups: list[Group], rows: dict[str, dict], cols: list[Column]) -> list[dict]:
    """Per group: name, method, n, seeds, runs, and ``{"mean", "std", "n", "values"}`` per column."""
    return [
        {
            "group": g.name,
            "method": g.method,
            "n": len(g.runs),
            "seeds": g.seeds,
            "runs": [r.name for r in g.runs],
            **{c.key: describe([rows[r.name].get(c.key) for r in g.runs]) for c in cols},
        }
        for g in groups
    ]


def grouped_table(stats: list[dict], cols: list[Column]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the main table: mean ± std over each group's seeds."""
    return (
        ["group", "n"] + [c.header for c in cols],
        [[s["group"], str(s["n"])] + [spread_cell(s[c.key], c.digits) for c in cols] for s in stats],
    )


def pick_baseline(groups: list[Group], name: str | None = None) -> Group:
    """The group named ``name`` (or whose method it is); by default ERM's, else the first."""
    if name is not None:
        found = [g for g in groups if name in (g.name, g.method)]
        if not found:
            raise ValueError(f"no group {name!r} to compare against (groups: {', '.join(g.name for g in groups)})")
        return found[0]
    return next((g for g in groups if g.method == "erm"), groups[0])


def paired_stats(groups: list[Group], baseline: Group, rows: dict[str, dict]) -> list[dict]:
    """Every other group against the baseline, seed by seed, for the :data:`PAIRED` columns."""
    return [
        {"group": g.name, "baseline": baseline.name, **{k: paired(g, baseline, rows, k) for k in PAIRED}}
        for g in groups
        if g is not baseline
    ]


def paired_table(pairs: list[dict], cols: list[Column]) -> tuple[list[str], list[list[str]]]:
    by_key = {c.key: c for c in cols}
    return (
        ["group", *[f"Δ {by_key[k].header}" for k in PAIRED]],
        [[p["group"], *[paired_cell(p[k], by_key[k].digits) for k in PAIRED]] for p in pairs],
    )


def robustness_tables(groups: list[Group]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per-severity error and ECE pooled over corruptions, a row per group with robustness files (mean ± std over
    its seeds): (title, head, body)."""
    robust = [
        (g.name, [read_robustness(r.files["robustness"]) for r in g.runs if "robustness" in r.files]) for g in groups
    ]
    robust = [(name, rbs) for name, rbs in robust if rbs]
    if not robust:
        return []
    severities = sorted({s for _, rbs in robust for rb in rbs for s in rb.severities})
    out = []
    for metric, title, digits in (("error", "test error (%)", 2), ("ece", "ECE", 4)):
        body = []
        for name, rbs in robust:
            per = [dict(zip(rb.severities, rb.by_severity(metric))) for rb in rbs]
            body.append(
                [name, spread_cell(describe([rb.clean(metric) for rb in rbs]), digits)]
                + [spread_cell(describe([p.get(s) for p in per]), digits) for s in severities]
                + [spread_cell(describe([rb.mean(metric) for rb in rbs]), digits)]
            )
        out.append(
            (
                f"Robustness: {title} per severity, pooled over corruptions",
                ["group", "clean"] + [f"severity {s}" for s in severities] + ["all corrupted"],
                body,
            )
        )
    return out


CONNECTIVITY_LABELS = dict(zip(CONNECTIVITY, ("line", "aligned line", "trained curve")))


def barrier_split(attrs: dict) -> str:
    """The split a connectivity file's barrier is read on: test where it was evaluated, else train."""
    return "test" if "barrier_test" in attrs else "train"


def connectivity_stats(groups: list[Group]) -> list[dict]:
    """Per group with line or curve files: the barrier of each kind (:data:`CONNECTIVITY_LABELS`) over its pairs of
    seeds (``describe``: mean, std, n) and the split it was read on."""
    found = []
    for g in groups:
        attrs = {k: [read_attrs(r.files[k]) for r in g.runs if k in r.files] for k in CONNECTIVITY_LABELS}
        if any(attrs.values()):
            row: dict = {"group": g.name}
            for kind, items in attrs.items():
                row[kind] = describe([a.get(f"barrier_{barrier_split(a)}") for a in items])
                row[f"{kind}_split"] = sorted({barrier_split(a) for a in items})
            found.append(row)
    return found


def connectivity_table(stats: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The barriers between seeds as a table (title, head, body); none without connectivity files."""
    if not stats:
        return []

    def cell(row: dict, kind: str) -> str:
        stat = row[kind]
        split = "/".join(row[f"{kind}_split"])
        return "—" if stat["mean"] is None else f"{spread_cell(stat, 4)} ({split}, n={stat['n']})"

    return [
        (
            "Mode connectivity: loss barrier between seeds, max_t [L(t) - ((1-t) L(0) + t L(1))] (mean ± std over "
            "pairs of seeds)",
            ["group", *CONNECTIVITY_LABELS.values()],
            [[row["group"], *(cell(row, k) for k in CONNECTIVITY)] for row in stats],
        )
    ]


def overlay_figures(
    groups: list[Group],
    lib: Renderer,
    *,
    log: bool = False,
    calibration: dict[str, dict] | None = None,
    max_grid: int | None = None,
    value: str = "train_loss",
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """``{name: figure}`` of every overlay the groups' files support (``lib``: :mod:`.plots.mpl` or
    :mod:`.plots.plotly`): a group's mean over its seeds with its spread; one 2-D surface per group (its first
    seed's). ``value`` is what the surfaces show (train/test loss/acc; the sweeps show its loss or accuracy);
    ``max_grid`` reads 2-D surfaces strided for the browser; ``only`` names the figures wanted (the files of
    the others are not read)."""
    figs: dict[str, object] = {}

    def want(*names: str) -> bool:
        return only is None or any(n in only for n in names)

    def per_group(key: str, read, combine, first: bool = False):
        found = []
        for g in groups:
            having = [r for r in g.runs if any(k in r.files for k in key.split("|"))]
            if having:
                found.append((g.name, combine([read(r) for r in having[: 1 if first else None]])))
        return found

    histories = [
        (g.name, mean_curves([history_curves(r.history) for r in g.runs if r.history], "epoch", HISTORY))
        for g in groups
        if want("training") and any(r.history for r in g.runs)
    ]
    if histories:
        figs["training"] = lib.training_curves(histories)
    tracked = [
        (g.name, mean_curves([curvature_curves(r.curvature) for r in g.runs if r.curvature], "step", CURVATURE))
        for g in groups
        if want("curvature") and any(r.curvature for r in g.runs)
    ]
    if tracked:
        figs["curvature"] = lib.sharpness_curves(tracked)
    slices = per_group("surface_1d|surface_2d", _slice, mean_surface) if want("slices") else []
    if slices:
        figs["slices"] = lib.compare_slices(slices, log=log or None)
    surfaces = (
        per_group(
            "surface_2d", lambda r: read_surface(r.files["surface_2d"], max_points=max_grid), lambda s: s[0], first=True
        )  # the picture of one seed: the others are not read
        if want("surfaces")
        else []
    )
    surfaces = [(n, s) for n, s in surfaces if value in s.values]
    if surfaces:
        figs["surfaces"] = lib.compare_surfaces(surfaces, value=value, log=log)
    sweeps = per_group("sweep", lambda r: read_sweep(r.files["sweep"]), mean_sweep) if want("sweeps") else []
    if sweeps:
        figs["sweeps"] = lib.compare_sweeps(sweeps, value="acc" if value.endswith("acc") else "loss", log=log)
    spectra = (
        per_group("hessian", lambda r: read_hessian(r.files["hessian"], vectors=False).arrays(), mean_spectrum)
        if want("spectra")
        else []
    )
    if spectra:
        figs["spectra"] = lib.compare_spectra(spectra)
    robust = (
        per_group("robustness", lambda r: read_robustness(r.files["robustness"]), list)
        if want("robustness", "corruption_errors")
        else []
    )
    if robust and want("robustness"):
        figs["robustness"] = lib.robustness_by_severity(
            [(n, mean_curves([severity_curves(rb) for rb in rbs])) for n, rbs in robust]
        )
        rel = [(n, [rb for rb in rbs if rb.has_baseline]) for n, rbs in robust]
        rel = [(n, rbs) for n, rbs in rel if rbs]
        if rel and want("corruption_errors"):
            names = rel[0][1][0].corruptions
            rows = [
                (
                    n,
                    np.mean(
                        [[*rb.ce(), rb.relative_clean_error(), rb.mce()] for rb in rbs if rb.corruptions == names],
                        axis=0,
                    ),
                )
                for n, rbs in rel
                if any(rb.corruptions == names for rb in rbs)
            ]
            figs["corruption_errors"] = lib.corruption_table(
                [n for n, _ in rows],
                [*names, "clean", "mCE"],
                np.array([v for _, v in rows]),
                center=1.0,
                title="corruption error relative to the baseline "
                f"({rel[0][1][0].attrs.get('baseline_method', 'baseline')})",
            )
    if want("connectivity"):
        lines = []
        for kind, label in CONNECTIVITY_LABELS.items():
            for name, mean in per_group(kind, lambda r, k=kind: _one_split(read_surface(r.files[k])), mean_surface):
                lines.append((f"{name}: {label}", mean))
        if lines:
            figs["connectivity"] = lib.compare_slices(lines, log=log or None, title="between two seeds of a group")
    if calibration and want("calibration"):
        pooled = [
            (g.name, pooled_bins([calibration[r.name] for r in g.runs if r.name in calibration]))
            for g in groups
            if any(r.name in calibration for r in g.runs)
        ]
        figs["calibration"] = lib.reliability_diagram(pooled, title="reliability (test predictions, seeds pooled)")
    return figs


def _one_split(s: Surface) -> Surface:
    """The surface with the values of the split its barrier is read on only (one curve per line in a figure)."""
    split = barrier_split(s.attrs)
    keep = {k: v for k, v in s.values.items() if k.startswith(f"{split}_")}
    return Surface(s.path, s.xcoordinates, s.ycoordinates, keep, s.computed, {**s.attrs, "splits": [split]}, s.layout)


def _slice(run: Run) -> Surface:
    if "surface_1d" in run.files:
        return read_surface(run.files["surface_1d"])
    return read_surface(run.files["surface_2d"]).slice("x", 0.0)


SPREAD = " Groups of several seeds are drawn as their mean with ±1 std over the seeds."
CAPTIONS = {
    "training": "Training curves from metrics.jsonl: loss (train solid, test dashed), error and test ECE per epoch."
    + SPREAD,
    "slices": "Loss and accuracy along the x direction through each minimum (1-D surface files, else the y=0 row "
    "of the 2-D surface); train solid, test dashed." + SPREAD,
    "surfaces": "2-D loss surfaces (a group's first seed), one colour scale for all, log-spaced levels, equal axes.",
    "sweeps": "Loss increase over the unperturbed loss against the perturbation radius, one panel per kind with its "
    "unit; ±1 std over trials (one run) or over seeds (a group).",
    "spectra": "Top Hessian eigenvalues by rank (and the SLQ spectral density where computed)." + SPREAD,
    "robustness": "Test error and ECE under corruption, pooled over corruptions per severity (0 = clean); the DAMP "
    "paper's evaluation." + SPREAD,
    "corruption_errors": "Corruption error CE_c = sum_s E(c,s) / sum_s E_baseline(c,s) per corruption, the clean error "
    "ratio, and mCE (mean CE over the common corruptions), a group's mean over its seeds; on a log "
    "scale centred at 1: below 1 (blue) is more robust than the baseline.",
    "curvature": "Curvature tracked during training (curvature.jsonl): the loss on the tracked data and the top "
    "Hessian eigenvalue against the step, the stability threshold 2/η dotted (Cohen et al. 2021)." + SPREAD,
    "connectivity": "Loss and accuracy from one seed's minimum (t=0) to another's (t=1): the straight line, the line "
    "after permutation alignment, and a trained curve, each a group's mean over its pairs of seeds (test split where "
    "evaluated).",
    "calibration": "Reliability diagram of the final checkpoints' test predictions (15 equal-width confidence bins; a "
    "group's seeds pooled).",
}


def compare(
    paths: list[str | Path],
    out: str | Path,
    *,
    rho: float = SHARPNESS_RHO,
    formats: tuple[str, ...] = ("png",),
    log: bool = False,
    baseline: str | None = None,
) -> Path:
    """The comparison report of ``landscape compare``, from Python.

    Args:
        paths: run folders (training runs, or a user's own folders of result files); runs that differ only in their
            seed are grouped, and each group's numbers carry their spread.
        out: the folder to write ``report.md``, ``report.html``, ``summary.json`` and the figures into.
        rho: the radius at which the sweep-based sharpness columns are read.
        formats: the figures' file formats (``"png"``, ``"svg"``, ``"pdf"``).
        log: draw losses on a log scale.
        baseline: the name of the group the others are compared with (paired differences); ``None``: the first
            ERM group, else the first.

    Returns:
        ``out``.

    Raises:
        ValueError: a malformed run, no runs, or an unknown ``baseline``.
    """
    return write_report(find_runs(list(paths)), out, rho=rho, formats=formats, log=log, baseline=baseline)


def correlation_section(runs: list[Run], rho: float) -> tuple[list, dict, dict]:
    """Kendall's τ of each flatness measure with the generalization gap, when the runs vary along a hyper-parameter
    (other than the seed) and there are at least four: ``(correlations, scatter points, taus)``, else empty."""
    from .correlation import correlate, run_row

    rows = [run_row(r, rho) for r in runs]
    if len(rows) < 4:
        return [], {}, {}
    try:
        found = [c for c in correlate(rows, resamples=1000) if c.n >= 3]
    except ValueError:  # no measure, or too few runs with one
        return [], {}, {}
    if not found or not found[0].psi:
        return [], {}, {}
    group_of = {r.name: g.name for g in group_runs(runs) for r in g.runs}
    points = {
        c.measure: [
            (group_of[row["run"]], row[c.measure], row["gap"])
            for row in rows
            if np.isfinite(row.get(c.measure, np.nan)) and np.isfinite(row["gap"])
        ]
        for c in found
    }
    return found, points, {c.measure: c.tau for c in found}


def write_report(
    runs: list[Run],
    out: str | Path,
    *,
    rho: float = 0.1,
    formats: tuple[str, ...] = ("png",),
    log: bool = False,
    calibration: dict[str, dict] | None = None,
    intro: str = "",
    baseline: str | None = None,
) -> Path:
    """Write ``report.md`` (tables + static figures), ``report.html`` (one self-contained page) and ``summary.json``:
    runs grouped by experiment (mean ± std over seeds), paired differences against ``baseline`` (default ERM's
    group), and the per-seed rows."""
    from .plots import mpl as plot_mpl  # here: the table functions need no plotting libraries
    from .plots import plotly as plot_plotly

    out = Path(out)
    cols = columns(rho)
    rows = {r.name: summary_row(r, rho) for r in runs}
    groups = group_runs(runs)
    base = pick_baseline(groups, baseline)
    stats = group_stats(groups, rows, cols)
    pairs = paired_stats(groups, base, rows)
    group_of = {r.name: g.name for g in groups for r in g.runs}
    md_figs = []
    files: dict[str, bytes] = {}  # made in memory, written together (write_files): never a half-replaced report
    for name, fig in overlay_figures(groups, plot_mpl, log=log, calibration=calibration).items():
        for fmt in formats:
            files[f"{name}.{fmt}"] = plot_mpl.to_bytes(fig, fmt)
        md_figs.append(f"### {name}\n\n{CAPTIONS[name]}\n\n![{name}]({name}.{formats[0]})\n")
    sources = _sources(runs)
    title = "Comparison of " + ", ".join(g.name for g in groups)
    main_table, per_seed = grouped_table(stats, cols), summary_table(list(rows.values()), cols, group_of)
    pair_title = (
        f"Paired differences against {base.name} (seed by seed: mean [95 % interval], n pairs)" if pairs else ""
    )
    robust = robustness_tables(groups)
    connectivity = connectivity_stats(groups)
    robust += connectivity_table(connectivity)
    correlations, points, taus = correlation_section(runs, rho)
    if correlations:
        robust.append((CORRELATION_TITLE, *correlation_table(correlations)))
        for fmt in formats:
            files[f"correlation.{fmt}"] = plot_mpl.to_bytes(plot_mpl.correlation_scatter(points, taus), fmt)
        md_figs.append(f"### correlation\n\n{CORRELATION_CAPTION}\n\n![correlation](correlation.{formats[0]})\n")
    md = (
        f"# {title}\n\n{intro}\n\n**Mean ± std over seeds**\n\n{markdown_table(*main_table)}\n\n"
        + (f"**{pair_title}**\n\n{markdown_table(*paired_table(pairs, cols))}\n\n" if pairs else "")
        + f"{_notes(rho)}\n\n"
        + "".join(f"**{t}**\n\n{markdown_table(h, b)}\n\n" for t, h, b in robust)
        + f"**Per seed**\n\n{markdown_table(*per_seed)}\n\n"
        + f"{_sources_md(sources)}\n\n## Figures\n\n"
        + "\n".join(md_figs)
    )
    files["report.md"] = md.encode()
    parts = []
    for i, (name, fig) in enumerate(overlay_figures(groups, plot_plotly, log=log, calibration=calibration).items()):
        parts.append(
            f"<h3>{name}</h3><p>{html.escape(CAPTIONS[name])}</p>"
            + fig.to_html(full_html=False, include_plotlyjs=i == 0, default_height=420)
        )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
        f"<h3>Mean ± std over seeds</h3>{html_table(*main_table)}"
        + (f"<h3>{html.escape(pair_title)}</h3>{html_table(*paired_table(pairs, cols))}" if pairs else "")
        + f"<p>{html.escape(_notes(rho))}</p>"
        + "".join(f"<h3>{html.escape(t)}</h3>{html_table(h, b)}" for t, h, b in robust)
        + f"<details><summary>Per seed ({len(rows)} runs)</summary>{html_table(*per_seed)}</details>"
        + f"<h2>Figures</h2>{''.join(parts)}"
        + (
            f"<h3>correlation</h3><p>{html.escape(CORRELATION_CAPTION)}</p><img src='correlation.{formats[0]}'>"
            if correlations and formats[0] != "pdf"
            else ""
        )
        + "</body></html>"
    )
    files["report.html"] = page.encode()
    summary = {
        "rho": rho,
        "columns": {c.key: {"header": c.header, "from": c.source} for c in cols},
        "rows": [{**row, "group": group_of[name]} for name, row in rows.items()],
        "groups": stats,
        "baseline": base.name,
        "paired": pairs,
        "connectivity": connectivity,
        "correlation": [asdict(c) for c in correlations],
        "sources": sources,
    }
    files["summary.json"] = json_text(summary).encode()
    write_files(out, files)
    return out


CORRELATION_TITLE = (
    "Kendall τ of each flatness measure with the generalization gap (test error minus the last epoch's training "
    "error), 95 % bootstrap interval over runs; granulated τ: Jiang et al.'s mean over hyper-parameter axes of τ "
    "within runs that differ only along the axis (ψ)"
)
CORRELATION_CAPTION = (
    "Each run's flatness measure against its generalization gap, one panel per measure (its Kendall τ above it)."
)


def _notes(rho: float) -> str:
    return (
        "Runs that differ only by their seed form a group (mean ± std over its seeds, n seeds); paired differences "
        "match a group's runs with the baseline's of the same seed and give a Student-t 95 % interval. Test error, "
        "NLL and ECE (15 bins) are the last epoch's evaluation (metrics.jsonl; for a weight-averaging group, +swa, "
        "the averaged model's, averages.json); the Hessian "
        "columns come from each run's Hessian file (Lanczos top eigenvalue, trace estimate) and sharpness from its "
        f"sweep file: adversarial loss at radius {rho:g} minus the loss at radius 0 (linearly interpolated between "
        "swept radii). Corruption error is the mean test error over every corruption and severity of the run's "
        "robustness file, mCE its mean corruption error relative to the baseline stored there. ms/step is the "
        "training's wall-clock time per optimizer step on the machine that trained it: a cost, not a result. "
        "— marks a number the run has no file for."
    )


def _sources(runs: list[Run]) -> dict[str, dict[str, str]]:
    return {
        r.name: {
            "metrics": str(r.metrics_source) if r.metrics_source else "",
            **{k: str(v) for k, v in r.files.items()},
        }
        for r in runs
    }


def _sources_md(sources: dict[str, dict[str, str]]) -> str:
    return markdown_table(
        ["run", "files"], [[name, ", ".join(f"`{p}`" for p in files.values() if p)] for name, files in sources.items()]
    )


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}"
    "th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}details{margin:1em 0}"
    "summary{cursor:pointer;color:#0072B2}"
)


__all__ = ["compare"]
