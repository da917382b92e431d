"""Loss-landscape analysis of checkpoints: directions, surfaces, and their HDF5 files."""
__version__ = "0.1.0"

from .directions import normalize_direction, pca_directions, random_directions, target_tensors  # noqa: E402
from .jobs import EvalOptions, interpolation_surface, random_surface, trajectory_surface  # noqa: E402
from .store import read_directions, read_surface  # noqa: E402

__all__ = [
    "EvalOptions", "interpolation_surface", "normalize_direction", "pca_directions", "random_directions",
    "random_surface", "read_directions", "read_surface", "target_tensors", "trajectory_surface",
]
