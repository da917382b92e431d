"""The ``landscape`` subcommands: which module adds each one's parser, and its one-line help.

Kept free of heavy imports: ``landscape --help`` lists the commands from here alone, and a command's
module (with torch and its analyses) is imported only when that command is asked for.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model with ERM, SAM, ASAM, AMP, DAMP, DAAP or RMP"),
    "surface": ("surface", "1D/2D loss surface along random directions"),
    "interpolate": ("surface", "loss along the line between two checkpoints"),
    "trajectory": ("surface", "2-D surface on the PCA directions of a training run, with its path"),
    "barrier": ("connectivity", "loss barrier on the line between two models, optionally aligned (re-basin, REPAIR)"),
    "connect": ("connectivity", "train a Bezier or polychain curve between two models and the loss along it"),
    "align": ("connectivity", "permute a model's hidden units to match another's (same function)"),
    "hessian": ("hessian", "Hessian eigenvalues, trace and spectral density"),
    "sweep": ("sweep", "loss against perturbation radius (the AMP poster's figure)"),
    "sharpness": ("sharpness", "sharpness by each definition: Auto-PGD, average, adaptive, L-inf, m-, PAC-Bayes..."),
    "robustness": ("robustness", "error, NLL, ECE under image corruptions; CE and mCE vs a baseline"),
    "plot": ("plot", "paper-style figures of analysis files"),
    "compare": ("compare", "compare runs: tables with mean ± std over seeds, paired differences, overlaid figures"),
    "explore": ("explore", "browse a folder of runs in the browser (Dash)"),
    "demo": ("demo", "train ERM, SAM, ASAM, AMP and DAMP on digits over 3 seeds and compare them"),
}


def help_of(command: str) -> str:
    return COMMANDS[command][1]
