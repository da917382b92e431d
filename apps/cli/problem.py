"""``--problem FILE.py:NAME``: a user's own :class:`landscape.Problem` for ``surface``, ``hessian`` and ``sweep``.

The file is run as Python (only pass your own files), then NAME must be a Problem or a
zero-argument function returning one. Every way this can go wrong gives one line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType

from landscape.problem import Problem

CHECKPOINT_ONLY = {"samples": None, "sample_seed": None, "data_root": None, "batch_size": None, "device": None}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


class Neighbours(importlib.abc.MetaPathFinder):
    """Finds top-level modules in one folder (a ``--problem`` file's own ``data.py``, say) while that file runs,
    without putting the folder on ``sys.path``, where it would stay visible to every later import."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def find_spec(self, name: str, path=None, target=None):
        return PathFinder.find_spec(name, [self.folder]) if path is None else None


def _module(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"--problem: {target!r} does not exist" + (" (a folder)" if path.is_dir() else ""))
        spec = importlib.util.spec_from_file_location(f"landscape_user_problem_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"--problem: cannot load {target!r} as Python")
        module = importlib.util.module_from_spec(spec)
        neighbours = Neighbours(path.resolve().parent)
        sys.meta_path.insert(0, neighbours)  # the file may import its neighbours, as `python FILE.py` would let it
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            raise ValueError(f"--problem: {target}:{e.lineno}: SyntaxError: {e.msg}") from None
        except SystemExit as e:  # the file is a script (sys.exit, argparse): it must not end the analysis silently
            raise ValueError(
                f"--problem: running {target} called sys.exit({e.code!r}); guard its script part with "
                "if __name__ == '__main__':"
            ) from None
        except Exception as e:
            raise ValueError(f"--problem: running {target} raised {_first_line(e)}") from e
        finally:
            sys.meta_path.remove(neighbours)
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        raise ValueError(f"--problem: no file or module {target!r} ({_first_line(e)})") from None
    except SystemExit as e:
        raise ValueError(f"--problem: importing {target} called sys.exit({e.code!r})") from None
    except Exception as e:
        raise ValueError(f"--problem: importing {target} raised {_first_line(e)}") from e


def load_problem(spec: str) -> Problem:
    """``FILE.py:NAME`` or ``package.module:NAME`` -> the Problem it names (calling NAME if it is a function)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise ValueError(f"--problem expects FILE.py:NAME or MODULE:NAME, got {spec!r}")
    module = _module(target)
    if not hasattr(module, name):
        defined = [n for n in vars(module) if not n.startswith("_")][:8]
        raise ValueError(f"--problem: {target} defines no {name!r} (it has {', '.join(defined) or 'nothing'})")
    obj = getattr(module, name)
    if callable(obj) and not isinstance(obj, Problem) and not isinstance(obj, type):
        try:
            obj = obj()
        except ValueError as e:
            raise ValueError(f"--problem: {name}(): {e}") from e
        except Exception as e:
            raise ValueError(f"--problem: {name}() raised {_first_line(e)}") from e
    if not isinstance(obj, Problem):
        raise ValueError(
            f"--problem: {name} is a {type(obj).__name__}, not a landscape.Problem "
            "(or a zero-argument function returning one)"
        )
    return obj


def problem_from_args(args: argparse.Namespace) -> Problem | None:
    """The user's problem if ``--problem`` was given (then the checkpoint-only options are refused), else None."""
    if getattr(args, "problem", None) is None:
        if args.checkpoint is None:
            raise ValueError("give a checkpoint, or --problem FILE.py:NAME")
        return None
    if args.checkpoint is not None:
        raise ValueError("give a checkpoint or --problem, not both")
    given = [
        f"--{k.replace('_', '-')}" for k, default in CHECKPOINT_ONLY.items() if getattr(args, k, default) != default
    ]
    if given:
        raise ValueError(f"{', '.join(given)} set the checkpoint's data; with --problem the problem defines them")
    return load_problem(args.problem)
