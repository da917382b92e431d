"""Applications over the library: the ``landscape`` command line (and, later, the explorer)."""
