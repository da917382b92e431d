"""Loss-landscape analysis of checkpoints (surfaces, curvature, sweeps)."""
__version__ = "0.1.0"
