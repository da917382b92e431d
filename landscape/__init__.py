"""Loss-landscape analysis of any PyTorch model: a :class:`Problem` (model, data, loss) and the analyses over it.

import landscape
problem = landscape.Problem(model, loader, nn.CrossEntropyLoss())
s = landscape.surface(problem, "-1:1:21", "-1:1:21", out="surface.h5")
h = landscape.hessian(problem, top_k=5, trace=True)
sw = landscape.sweep(problem, [0, 0.05, 0.1, 0.2])
"""

__version__ = "0.1.0"

import importlib

# name -> the module that defines it, imported on first use (PEP 562): ``import landscape`` and the CLI's
# ``--help`` stay fast; ``landscape.hessian`` still loads what it needs when it is touched.
_EXPORTS = {
    "CurvatureOperator": "curvature",
    "Hessian": "io.hessian",
    "hessian": "curvature",
    "read_hessian": "io.hessian",
    "normalize_direction": "directions",
    "pca_directions": "directions",
    "random_directions": "directions",
    "target_tensors": "directions",
    "interpolate": "surfaces",
    "surface": "surfaces",
    "trajectory": "surfaces",
    "sharpness": "flatness",
    "Sharpness": "flatness",
    "fisher_rao": "flatness",
    "correlate": "correlation",
    "sweep": "sweeps",
    "Problem": "problem",
    "save_snapshot": "snapshots",
    "compare": "report",
    "Surface": "io",
    "Sweep": "io",
    "read_directions": "io",
    "read_surface": "io",
    "read_sweep": "io",
    "read": "io",
    "Robustness": "io.robustness",
    "read_robustness": "io.robustness",
    "corruption_robustness": "robustness",
    "barrier": "connectivity",
    "Barrier": "connectivity",
    "connect": "connectivity",
    "curve_plane": "connectivity",
    "Curve": "connectivity",
    "align": "alignment",
    "CurvatureTracker": "tracking",
    "fit": "trainers.loop",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    # the problem and its analyses
    "Problem",
    "surface",
    "interpolate",
    "trajectory",
    "hessian",
    "sweep",
    "sharpness",
    "fisher_rao",
    "correlate",
    "corruption_robustness",
    "barrier",
    "connect",
    "curve_plane",
    "align",
    "save_snapshot",
    "compare",
    "CurvatureOperator",
    "CurvatureTracker",
    "fit",
    # results and their files
    "Surface",
    "Sweep",
    "Hessian",
    "Barrier",
    "Curve",
    "Sharpness",
    "read_surface",
    "read_sweep",
    "read_hessian",
    "read_directions",
    "read",
    "Robustness",
    "read_robustness",
    # directions
    "normalize_direction",
    "pca_directions",
    "random_directions",
    "target_tensors",
]
