"""Loss-landscape analysis of any PyTorch model: a :class:`Problem` (model, data, loss) and the analyses over it.

    import landscape
    problem = landscape.Problem(model, loader, nn.CrossEntropyLoss())
    s = landscape.surface(problem, "-1:1:21", "-1:1:21", out="surface.h5")
    h = landscape.hessian(problem, top_k=5, trace=True)
    sw = landscape.sweep(problem, [0, 0.05, 0.1, 0.2])
"""
__version__ = "0.1.0"

from .curvature import Hessian, hessian, read_hessian  # noqa: E402
from .directions import normalize_direction, pca_directions, random_directions, target_tensors  # noqa: E402
from .grid import interpolate, surface, trajectory  # noqa: E402
from .jobs import EvalOptions, interpolation_surface, random_surface, trajectory_surface  # noqa: E402
from .perturbation import sharpness, sweep  # noqa: E402
from .problem import Problem  # noqa: E402
from .snapshots import save_snapshot  # noqa: E402
from .store import Surface, Sweep, read_directions, read_surface, read_sweep  # noqa: E402

__all__ = [
    # the problem and its analyses
    "Problem", "surface", "interpolate", "trajectory", "hessian", "sweep", "sharpness", "save_snapshot",
    # results and their files
    "Surface", "Sweep", "Hessian", "read_surface", "read_sweep", "read_hessian", "read_directions",
    # directions
    "normalize_direction", "pca_directions", "random_directions", "target_tensors",
    # checkpoint jobs (the CLI's)
    "EvalOptions", "interpolation_surface", "random_surface", "trajectory_surface",
]
