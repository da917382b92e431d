"""One module per tab of the explorer: ``tab()`` its layout, ``register(app, catalog)`` its callbacks."""

from . import compare, hessian, robustness, runs, surface, sweep, training

TABS = (runs, training, surface, hessian, sweep, robustness, compare)
VERSIONED = ("surface", "hessian", "sweep", "robustness", "compare")  # views that redraw when their files change
