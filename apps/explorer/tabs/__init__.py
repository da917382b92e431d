"""One module per tab of the explorer: ``tab()`` its layout, ``register(app, catalog)`` its callbacks."""

from . import compare, connectivity, hessian, robustness, runs, surface, sweep, training

TABS = (runs, training, surface, hessian, sweep, robustness, connectivity, compare)
# views that redraw when their files change
VERSIONED = ("surface", "hessian", "sweep", "robustness", "connectivity", "compare")
