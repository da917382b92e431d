"""The toolkit as users install it: one top-level package that lives beside their own code (issue 21)."""

import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

USER_FILES = {  # a research project's own modules, named like ours were
    "data.py": "WHO = 'the user'\n",
    "apps.py": "WHO = 'the user'\n",
    "trainers.py": "WHO = 'the user'\n",
    "utils.py": "WHO = 'the user'\n",
    "my.py": textwrap.dedent(
        """
        import torch, torch.nn as nn
        import landscape
        import data  # the user's own data.py, next to this file
        assert data.WHO == "the user", data.__file__
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g)
        problem = landscape.Problem(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), (x, y))
        """
    ),
}
USE = textwrap.dedent(
    """
    import sys, landscape, data, apps, trainers, utils
    assert {data.WHO, apps.WHO, trainers.WHO, utils.WHO} == {"the user"}
    exec(open("my.py").read())
    s = landscape.surface(problem, "-1:1:3", progress=False)
    h = landscape.hessian(problem, top_k=1, progress=False)
    w = landscape.sweep(problem, [0, 0.1], kinds=["random"], trials=2, progress=False)
    print("ok", s.values["train_loss"].shape, len(h.eigenvalues), w.radii.tolist(), landscape.__file__)
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed into a fresh venv outside the repository (its dependencies
    are taken from this venv's site-packages through a .pth file: nothing is downloaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp.glob("*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    project = tmp / "project"
    project.mkdir()
    for name, text in USER_FILES.items():
        (project / name).write_text(text)
    return wheel, venv, project


def run_in(venv: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=project, capture_output=True, text=True, env={**env, "PATH": f"{venv}/bin"})


def test_the_wheel_holds_one_top_level_package(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"landscape"}, top
    for sub in ("trainers/optim/ascent.py", "data/digits.py", "apps/cli/__main__.py", "apps/explorer/tabs/runs.py"):
        assert f"landscape/{sub}" in names, sub


def test_a_project_with_its_own_data_apps_trainers_and_utils_uses_the_toolkit(installed):
    _, venv, project = installed
    r = run_in(venv, project, str(venv / "bin" / "python"), "-c", USE)
    assert r.returncode == 0 and r.stdout.startswith("ok (3,) 1 [0.0, 0.1]"), r.stderr[-3000:]
    assert str(ROOT) not in r.stdout  # the installed copy, not this checkout
    helped = run_in(venv, project, str(venv / "bin" / "landscape"), "--help")
    assert helped.returncode == 0 and "surface" in helped.stdout, helped.stderr
    out = project / "surface.h5"
    r = run_in(venv, project, str(venv / "bin" / "landscape"), "surface", "--problem", "my.py:problem", "--x=-1:1:3",
               "--no-progress", "--out", str(out))  # fmt: skip
    assert r.returncode == 0 and out.is_file(), r.stderr[-3000:]


def modules_after(imports: str, tmp_path: Path) -> list[str]:
    """The toolkit's modules a fresh interpreter holds after running ``imports`` (outside the checkout)."""
    code = f"import sys\n{imports}\nprint('\\n'.join(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_the_analyses_load_neither_optimizers_nor_the_loop_nor_corruptions(tmp_path):
    found = modules_after("import landscape; landscape.Problem; landscape.surface; landscape.hessian; landscape.sweep",
                          tmp_path)  # fmt: skip
    heavy = ("landscape.trainers.train", "landscape.trainers.loop")
    assert [m for m in found if m.startswith("landscape") and ("optim" in m or "corruption" in m or m in heavy)] == []


def test_nothing_of_ours_is_importable_under_a_top_level_name_of_its_own(tmp_path):
    everything = "import landscape.apps.cli.__main__, landscape.apps.explorer.app, landscape.trainers.train, " \
        "landscape.data.corruptions"  # fmt: skip
    assert [m for m in modules_after(everything, tmp_path) if m.split(".")[0] in ("apps", "data", "trainers")] == []


def raised_texts(path: Path) -> list[tuple[int, str]]:
    """Every string literal inside a ``raise`` or a ``warnings.warn`` call of a source file."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        is_warn = isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "warn"
        if isinstance(node, ast.Raise) or is_warn:
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    found.append((part.lineno, part.value))
    return found


def test_library_errors_name_keyword_arguments_not_flags():
    """The library speaks Python (``resume=True``); only the command line (landscape/apps) speaks in flags, and it
    translates the library's keywords into its own flags (apps.cli.__main__.in_flags)."""
    import re

    library = {p.resolve() for folder in ("landscape", "trainers", "data") for p in (ROOT / folder).rglob("*.py")}
    library = {p for p in library if not p.is_relative_to(ROOT / "apps")}  # the command line: flags are its words
    assert len(library) > 40
    flagged = [
        f"{p.relative_to(ROOT)}:{line}: {text}"
        for p in sorted(library)
        for line, text in raised_texts(p)
        if re.search(r"--[a-z]", text)
    ]
    assert flagged == []


def test_the_command_line_translates_keywords_into_its_flags(tmp_path):
    from helpers import cli

    r = cli("train", "--augment-severity", "2", "--out", str(tmp_path / "r"))
    assert r.stderr.strip() == "landscape train: error: --augment-severity needs --augment-corruption"
    r = cli("train", "--lr", "0.1", "--epochs", "1", "--out", str(tmp_path / "r"))
    r = cli("train", "--lr", "0.2", "--epochs", "1", "--out", str(tmp_path / "r"), "--resume")
    assert "cannot resume" in r.stderr and "--lr 0.1 (now 0.2)" in r.stderr, r.stderr
