"""One look for every figure, matplotlib and plotly alike: a colour-blind-safe palette with a marker and a dash per
series, human labels, the unit of each radius, and text that stays readable on any cell colour."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..io import Surface

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency; yellow last (weak on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PLOTLY_MARKERS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "x", "star")
DASHES = ("-", "--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)), (0, (10, 3)), (0, (1, 1)), (0, (4, 1, 1, 1)))
PLOTLY_DASHES = ("solid", "dash", "dashdot", "dot", "longdashdot", "longdash", "2px,2px", "6px,2px,2px,2px")
SPLIT_DASHES = {"train": "-", "test": "--"}  # any other split: dotted
PLOTLY_SPLIT_DASHES = {"train": "solid", "test": "dash"}
SEQUENTIAL = "viridis"  # perceptually uniform, readable in grey and with colour-vision deficiencies
DIVERGING = "RdBu_r"  # blue below the centre, red above
METRIC_LABELS = {"loss": "loss", "acc": "accuracy (%)", "error": "error (%)", "nll": "NLL", "ece": "ECE"}
RADIUS_UNITS = {
    "random": "‖δ‖₂",
    "random-filter": "× filter norms",
    "adversarial": "‖δ‖₂",
    "multiplicative": "σ of δ = σ ξ ∘ w",
    "adaptive": "‖(|w| + η)⁻¹ δ‖₂",
    "apgd": "‖δ‖₂",
}


def series(i: int) -> dict:
    """The colour, marker and dash of the i-th series (method or run), for matplotlib."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": DASHES[i % len(DASHES)],
    }


def plotly_series(i: int) -> dict:
    """The same for plotly: ``line`` and ``marker`` arguments of a scatter trace."""
    return {
        "line": {"color": PALETTE[i % len(PALETTE)], "dash": PLOTLY_DASHES[i % len(PLOTLY_DASHES)]},
        "marker": {"symbol": PLOTLY_MARKERS[i % len(PLOTLY_MARKERS)], "color": PALETTE[i % len(PALETTE)]},
    }


def human(name: str) -> str:
    """``train_loss`` -> ``train loss``, ``test_acc`` -> ``test accuracy (%)``: labels for people, not keys."""
    split, _, metric = name.rpartition("_")
    if metric in METRIC_LABELS and split:
        return f"{split.replace('_', ' ')} {METRIC_LABELS[metric]}"
    return METRIC_LABELS.get(name, name.replace("_", " "))


def radius_label(kind: str, radii: np.ndarray, normalize: str = "none") -> str:
    """The x label of a sweep: the radius, its unit for this kind of perturbation, and the swept range."""
    unit = RADIUS_UNITS["random-filter" if kind == "random" and normalize == "filter" else kind]
    return f"radius r = {unit}  ({float(np.min(radii)):.3g} to {float(np.max(radii)):.3g})"


def luminance(rgb: tuple[float, ...]) -> float:
    """WCAG relative luminance of an sRGB colour (components 0..1)."""
    c = np.asarray(rgb[:3], dtype=float)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(lin @ np.array([0.2126, 0.7152, 0.0722]))


def text_colour(rgb: tuple[float, ...]) -> str:
    """Black or white, whichever contrasts more with a cell of colour ``rgb``."""
    lum = luminance(rgb)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def log_ticks(lo: float, hi: float, most: int = 12) -> np.ndarray:
    """Round values within ``[lo, hi]`` (> 0) for a log axis: 1-2-5 steps, powers of ten over many decades (or where
    1-2-5 steps would give more than ``most`` ticks, e.g. on a short 3-D axis), and evenly spaced round values where
    the range is too short for either."""
    first, last = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    stride = max(1, (last - first) // 8)
    mantissas = (1,) if last - first > 4 or 3 * (last - first) > most else (1, 2, 5)
    ticks = [m * 10.0**k for k in range(first, last + 1, stride) for m in mantissas if lo <= m * 10.0**k <= hi]
    if len(ticks) >= 3:
        return np.array(ticks)
    step = 10.0 ** np.floor(np.log10((hi - lo) / 4)) if hi > lo else max(lo, 1e-12)
    step *= next((m for m in (1, 2, 5, 10) if (hi - lo) / (m * step) <= 6), 10)
    return np.unique([float(f"{v:.6g}") for v in np.arange(np.ceil(lo / step) * step, hi * (1 + 1e-12), step)])


def band_limits(mean: np.ndarray, std: np.ndarray, base: float, value: str) -> tuple[np.ndarray, np.ndarray]:
    """The +-1 std band of a sweep curve drawn as an increase over `base` (the unperturbed loss), clipped to
    what the quantity can be: the band of a loss increase stops at zero (or at the mean, where the mean
    itself dips below), an accuracy band stays within 0..100 %."""
    lo, hi = mean - std - base, mean + std - base
    if value == "acc":
        return np.maximum(lo, 0.0), np.minimum(hi, 100.0)
    return np.maximum(lo, np.minimum(mean - base, 0.0)), hi


DECADES = 10.0  # a loss curve spanning more than this ratio is drawn on a log axis


def wants_log(*arrays: np.ndarray) -> bool:
    """Whether positive values span more than :data:`DECADES` (then a log axis shows the basin)."""
    finite = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    finite = finite[np.isfinite(finite)]
    return bool(finite.size) and float(finite.min()) > 0 and float(finite.max()) / float(finite.min()) > DECADES


TRAINING_PANELS = (
    ("loss", ("train_loss", "test_loss")),
    ("error (%)", ("train_error", "test_error")),
    ("test ECE", ("test_ece",)),
)


def run_title(attrs: dict) -> str:
    """What produced a file: its label (or method), model and data."""
    return (
        f"{attrs.get('label') or attrs.get('method', '')} {attrs.get('model', '')} {attrs.get('dataset', '')}".strip()
    )


def surface_title(s: Surface, newline: str = "\n") -> str:
    """A surface's title: what produced it, else its path; over several seeds of directions, their number and the
    training basin's width (mean ± std over them)."""
    title = run_title(s.attrs) or s.path
    seeds = s.attrs.get("direction_seeds")
    if seeds and f"basin_width_{s.splits[0]}" in s.attrs:
        split = s.splits[0]
        width, spread = s.attrs[f"basin_width_{split}"], s.attrs[f"basin_width_std_{split}"]
        title += f"{newline}{seeds} direction pairs: {split} basin width {width:.3g} ± {spread:.2g}"
    key = f"{s.splits[0]}_loss"
    if s.attrs.get("bootstrap") and key in s.spread:
        ratio = float(np.nanmedian(s.spread[key] / np.abs(s.values[key])))
        title += (
            f"{newline}bootstrap over {s.attrs['bootstrap']} blocks: standard error {ratio:.1%} of the loss (median)"
        )
    return title


THRESHOLD_LABELS = {"sharpness_threshold": "2/η (stability)", "preconditioned_threshold": "2(1+β₁)/((1-β₁)η)"}


def path_label(s: Surface) -> str:
    """What the path drawn on a 2-D surface is: a trained curve between two models, or a training trajectory."""
    return "trained curve (A at the origin)" if s.attrs.get("directions") == "curve_plane" else "training trajectory"


def axis_label(s: Surface, axis: str) -> str:
    """An axis of a surface in what it means: a PCA component and its variance, an eigenvector, a direction."""
    kind = s.attrs.get("directions")
    axis = s.attrs.get("slice_axis", axis)  # a slice of a 2-D surface runs along its own axis
    if kind == "pca" and "explained_variance_ratio_" in s.extras:
        i = 0 if axis == "x" else 1
        return f"PC{i + 1}: {100 * s.extras['explained_variance_ratio_'][i]:.1f} %"
    if kind == "hessian":
        return f"eigenvector {1 if axis == 'x' else 2}"
    if kind == "interpolation":
        return "interpolation (0: A, 1: B)"
    if kind == "curve_plane":
        return "to B (distance)" if axis == "x" else "to the bend (distance)"
    if kind == "curve":
        return f"t along the {s.attrs.get('curve') or 'trained'} curve (0: A, 1: B)"
    return f"{axis} direction"


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
