"""Sphinx configuration of the API reference (``make docs``): autodoc over the public modules, the README's guide
as a page, warnings as errors (``-W``), and ``coverage_check.py`` run on the result."""

import landscape

project = "landscape"
release = version = landscape.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
napoleon_use_ivar = True  # "Attributes:" as fields of the class, not objects that duplicate the dataclass fields
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "myst.header"]  # the README links its own sections and files
html_theme = "alabaster"
