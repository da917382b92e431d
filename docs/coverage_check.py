"""Fail when a public name is missing from the built reference (in the style of optax's docs/ext/coverage_check.py).

Usage: ``python docs/coverage_check.py docs/_build/html/objects.inv``. Public: ``landscape.__all__`` and the
``__all__`` of ``landscape.limits``.
"""

import sys

from sphinx.util.inventory import InventoryFile

import landscape
import landscape.limits


def public() -> set[str]:
    names = {f"landscape.{n}" for n in landscape.__all__}
    return names | {f"landscape.limits.{n}" for n in landscape.limits.__all__}


def documented(path: str) -> set[str]:
    with open(path, "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    found = set()
    for role, entries in (inventory.data if hasattr(inventory, "data") else inventory).items():
        if role.startswith("py:"):
            found |= set(entries)
    return found


if __name__ == "__main__":
    missing = sorted(public() - documented(sys.argv[1]))
    if missing:
        sys.exit(f"the API reference lacks {len(missing)} public name(s): {', '.join(missing)}")
    print(f"coverage_check: all {len(public())} public names are in the reference")
