"""Checkpoint jobs behind the CLI: a checkpoint becomes a :class:`~landscape.problem.Problem`, the Python API
analyses it and writes the file (surfaces also under torchrun); calibration and corruption robustness of
classifiers. One module per kind of job; :mod:`.options` holds what they share."""

from .connectivity import connectivity_analysis
from .curvature import hessian_analysis, sweep_analysis
from .options import SPLITS, EvalOptions, checkpoint_problem, process_device
from .robustness import calibration, robustness_analysis
from .surfaces import hessian_surface, interpolation_surface, random_surface, trajectory_surface

__all__ = [
    "SPLITS", "EvalOptions", "calibration", "checkpoint_problem", "connectivity_analysis", "hessian_analysis",
    "hessian_surface", "interpolation_surface", "process_device", "random_surface", "robustness_analysis",
    "sweep_analysis", "trajectory_surface",
]  # fmt: skip
