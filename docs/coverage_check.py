"""Fail when a public name is missing from the built reference, or documents its parameters incompletely (in the
style of optax's docs/ext/coverage_check.py).

Usage: ``python docs/coverage_check.py docs/_build/html/objects.inv``. Public: the ``__all__`` of every module in
:data:`PUBLIC`. Every public function, class and method must name each of its parameters in its docstring (a
class: in its own docstring, which documents ``__init__``), and one whose body raises must have a ``Raises:``
section. ruff's pydocstyle rules (D1, D417) check the rest: every public name has a docstring, and an ``Args:``
section lists every parameter.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap

from sphinx.util.inventory import InventoryFile

PUBLIC = (  # the modules the reference documents, each by its __all__
    "landscape",
    "landscape.io",
    "landscape.plots.mpl",
    "landscape.plots.plotly",
    "landscape.runs",
    "landscape.groups",
    "landscape.limits",
    "landscape.trainers",
    "landscape.trainers.optim",
    "landscape.trainers.loop",
    "landscape.trainers.lightning",
    "landscape.trainers.huggingface",
    "landscape.data",
)


def public() -> dict[str, object]:
    """Every public name, fully qualified, with its object."""
    out = {}
    for name in PUBLIC:
        module = importlib.import_module(name)
        for attr in module.__all__:
            out[f"{name}.{attr}"] = getattr(module, attr)
    return out


def documented(path: str) -> set[str]:
    with open(path, "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    found = set()
    for role, entries in (inventory.data if hasattr(inventory, "data") else inventory).items():
        if role.startswith("py:"):
            found |= set(entries)
    return found


def _raises(obj: object) -> bool:
    """Whether the function's own body has a ``raise`` statement (not a nested function's)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]
    todo, found = list(ast.iter_child_nodes(body)), False
    while todo and not found:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        found = isinstance(node, ast.Raise) and node.exc is not None
        todo.extend(ast.iter_child_nodes(node))
    return found


def incomplete(name: str, obj: object) -> list[str]:
    """What the docstring of ``obj`` leaves out: parameters it never names, a missing Raises section."""
    if not callable(obj) or not obj.__module__.startswith("landscape"):
        return []
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    if inspect.isclass(obj) and target is object.__init__:
        return []
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and obj.__init__.__doc__ and obj.__init__ is not object.__init__:
        doc += obj.__init__.__doc__
    fields = getattr(obj, "__dataclass_fields__", None)
    problems = [
        f"{name}: parameter {p!r} is not described"
        for p in params
        if p not in ("self", "cls")
        and not p.startswith("_")
        and not re.search(rf"^\s*{p}( \(.*\))?:|``{p}``|\b{p}=", doc, re.M)
        and not (fields and p in fields and "Attributes:" in doc)
    ]
    if _raises(target) and "Raises:" not in doc:
        problems.append(f"{name}: raises, but its docstring has no Raises: section")
    return problems


def check(inventory: str) -> list[str]:
    names = public()
    found = documented(inventory)
    key = {n: n if isinstance(obj, (int, float, str, bool)) else id(obj) for n, obj in names.items()}
    aliases: dict[object, set[str]] = {}  # an object exported under several names is documented once
    for n in names:
        aliases.setdefault(key[n], set()).add(n)
    missing = [f"{n}: not in the reference" for n in sorted(names) if not aliases[key[n]] & found]
    seen: set[object] = set()
    problems = []
    for n, obj in sorted(names.items()):
        if key[n] not in seen:
            seen.add(key[n])
            problems += incomplete(n, obj)
    return missing + problems


if __name__ == "__main__":
    problems = check(sys.argv[1])
    if problems:
        sys.exit(f"the API reference has {len(problems)} problem(s):\n" + "\n".join(problems))
    print(f"coverage_check: all {len(public())} public names are in the reference, their parameters documented")
