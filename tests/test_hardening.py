"""Untrusted files, full disks, killed processes, diverging runs and careless numbers: each gets one line, loses
nothing, and leaves nothing behind (each test failed on the code before it)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import cli

from landscape.apps.explorer.catalog import Catalog
from landscape.io import read_surface

ROOT = Path(__file__).resolve().parents[1]


def one_line(r, message, code=2):
    err = r.stderr.strip()
    assert r.returncode == code and message in err and len(err.splitlines()) == 1, (r.returncode, err[-2000:])


# --- 1. files whose data live outside the served folder -------------------------------------------


def evil_files(root: Path, secret: Path) -> dict[str, Path]:
    """Surface-looking files whose 'train_loss' reads another file, four ways."""
    other = root.parent / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3.0)
    made = {}
    for how in ("external_link", "external_storage", "virtual", "soft_to_external"):
        path = root / how / "surface_1d.h5"
        path.parent.mkdir(parents=True)
        with h5py.File(path, "w") as f:
            f.attrs["kind"] = "surface"
            f["xcoordinates"] = np.linspace(-1, 1, 3)
            f["computed"] = np.ones(3, np.uint8)
            f.attrs["values"] = ["train_loss"]
            if how == "external_link":
                f["train_loss"] = h5py.ExternalLink(str(other), "/data")
            elif how == "external_storage":
                f.create_dataset("train_loss", shape=(3,), dtype="u1", external=[(str(secret), 0, 3)])
            elif how == "virtual":
                layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
                layout[:] = h5py.VirtualSource(str(other), "data", shape=(3,))
                f.create_virtual_dataset("train_loss", layout)
            else:
                f["elsewhere"] = h5py.ExternalLink(str(other), "/data")
                f["train_loss"] = h5py.SoftLink("/elsewhere")
        made[how] = path
    return made


def test_files_pointing_outside_are_refused_everywhere(tmp_path, capsys):
    from landscape.apps.cli.__main__ import main
    from landscape.apps.explorer import views

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    root = tmp_path / "served"
    made = evil_files(root, secret)
    for how, path in made.items():
        with pytest.raises(ValueError, match="refused"):
            read_surface(path)
        assert main(["plot", str(path), "--out", str(tmp_path / "fig")]) == 2
        err = capsys.readouterr().err
        assert "refused" in err and len(err.strip().splitlines()) == 1, err
    catalog = Catalog(root)
    snap = catalog.scan()
    assert snap["files"] == [] and sorted(p["path"] for p in snap["problems"]) == sorted(
        p.relative_to(root).as_posix() for p in made.values()
    )
    assert all("refused" in p["reason"] for p in snap["problems"])
    with pytest.raises(ValueError, match="refused"):  # a view asked for the file directly reads nothing either
        views.surface_figure(
            catalog, "external_storage/surface_1d.h5", kind="contour", value="train_loss", log=False, levels=10
        )


# --- 2. one malformed file must not blank the explorer -------------------------------------------


@pytest.mark.parametrize(
    "folder,name,content,reason",
    [
        ("a", "metrics.jsonl", "[1, 2]\n", "row 1 is a JSON list, not an object"),
        ("b", "config.json", "[1, 2]", "a JSON list, not an object"),
        ("c", "metrics.jsonl", '{"epoch": 1, "test_error": "high"}\n', "'test_error' is 'high', not a number"),
        ("d", "metrics.jsonl", "{not json\n", "line 1 is not JSON"),
    ],
)
def test_a_bad_run_file_is_listed_and_everything_else_keeps_working(analysed, tmp_path, folder, name, content, reason):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(analysed / "sam", root / "sam")
    (root / folder).mkdir(parents=True)
    (root / folder / name).write_text(content)
    snap = Catalog(root).scan()
    assert [r["run"] for r in snap["runs"]] == ["sam"] and snap["runs"][0]["lambda_max"] is not None
    assert snap["problems"] == [{"path": folder, "reason": snap["problems"][0]["reason"]}]
    assert reason in snap["problems"][0]["reason"]
    r = cli("compare", str(root / "sam"), str(root / folder), "--out", str(tmp_path / "report"), "--no-calibration")
    one_line(r, reason)


def test_nan_metrics_are_blank_cells_and_a_scalar_eigenvalue_file_is_refused(analysed, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(analysed / "erm", root / "erm")
    (root / "erm" / "metrics.jsonl").write_text('{"epoch": 1, "test_error": NaN, "seconds": 1.0}\n')
    with h5py.File(root / "erm" / "hessian.h5", "r+") as f:
        del f["eigenvalues"]
        f["eigenvalues"] = 3.0  # a scalar
    snap = Catalog(root).scan()
    assert snap["runs"] == [] and "'eigenvalues' is not a 1-D number array" in snap["problems"][0]["reason"]
    (root / "erm" / "hessian.h5").unlink()
    row = Catalog(root).scan()["runs"][0]
    assert row["test_error"] is None and row["epochs"] == 1  # NaN is shown as no number


# --- 3. a full disk -------------------------------------------------------------------------------


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (needs root); skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def fill(folder: Path, leave: int) -> None:
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "ballast", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_disk_ends_with_one_line_and_no_temporary_files(runs, tiny_disk):
    ckpt = str(runs / "erm" / "final.pt")
    earlier = tiny_disk / "earlier.h5"
    assert (
        cli("surface", ckpt, "--x", "-1:1:3", "--samples", "20", "--no-progress", "--out", str(earlier)).returncode == 0
    )
    before = earlier.read_bytes()
    fill(tiny_disk, 8 << 10)  # a few KB left
    r = cli(
        "surface",
        ckpt,
        "--x",
        "-1:1:41",
        "--y",
        "-1:1:41",
        "--samples",
        "20",
        "--no-progress",
        "--out",
        str(tiny_disk / "s.h5"),
    )
    one_line(r, "not enough free space")
    r = cli("train", "--epochs", "1", "--no-progress", "--out", str(tiny_disk / "run"))
    one_line(r, "free space")
    assert sorted(p.name for p in tiny_disk.iterdir() if p.name.startswith(".")) == []  # no temporary files
    assert earlier.read_bytes() == before and read_surface(earlier).complete  # earlier results intact


# --- 4. small files that claim huge grids ---------------------------------------------------------


def test_a_huge_compressed_grid_is_refused_and_large_ones_are_read_strided(tmp_path):
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:  # 12000 x 12000 zeros, a few hundred KB compressed
        f.attrs["kind"] = "surface"
        f["xcoordinates"] = np.linspace(-1, 1, 12000)
        f["ycoordinates"] = np.linspace(-1, 1, 12000)
        f.create_dataset("train_loss", shape=(12000, 12000), dtype="f8", compression="gzip", chunks=(1000, 1000))
    assert path.stat().st_size < 5e6
    with pytest.raises(ValueError, match="refused: a grid of 12000 x 12000"):
        read_surface(path)
    snap = Catalog(tmp_path).scan()
    assert snap["files"] == [] and "12000 x 12000" in snap["problems"][0]["reason"]  # never offered, never read
    ok = tmp_path / "ok.h5"
    from landscape.io.surface import create_surface

    xs, ys = np.linspace(-1, 1, 1001), np.linspace(-1, 1, 700)
    w = create_surface(ok, xs, ys, ["train"], [{"w": torch.zeros(1)}] * 2, {})
    z = np.add.outer(ys, xs)
    w.write([(k, {"train_loss": float(z.flat[k]), "train_acc": 0.0}) for k in range(0, z.size, 997)])
    w.close()
    s = read_surface(ok, max_points=151)
    assert s.values["train_loss"].shape == (len(s.ycoordinates), len(s.xcoordinates)) and len(s.xcoordinates) <= 152
    assert s.xcoordinates[-1] == 1 and s.ycoordinates[-1] == 1  # the edges are kept
    full = read_surface(ok)
    i = np.searchsorted(ys, s.ycoordinates)
    j = np.searchsorted(xs, s.xcoordinates)
    np.testing.assert_array_equal(s.values["train_loss"], full.values["train_loss"][np.ix_(i, j)])


# --- 5. workers die with their parent -------------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.mark.slow
def test_kill_9_of_robustness_leaves_no_worker_behind(runs, tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "landscape.apps.cli",
            "robustness",
            str(runs / "erm" / "final.pt"),
            "--corruptions",
            "glass_blur,zoom_blur,elastic_transform",
            "--workers",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path / "r.h5"),
        ],
        cwd=ROOT,
        env={**os.environ, "LANDSCAPE_CACHE": str(tmp_path / "cache")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while len(children(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    workers = children(proc.pid)
    assert len(workers) >= 2, "the workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists()
        and "Z" not in (Path(f"/proc/{w}") / "stat").read_text().rsplit(")", 1)[1].split()[0]
    ]
    assert alive == [], f"orphans left: {alive}"


# --- 6. divergence and strict JSON ----------------------------------------------------------------


def strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_a_diverging_run_stops_with_one_line_and_keeps_strict_json(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--lr", "1000", "--epochs", "4", "--no-progress", "--out", str(out))
    one_line(r, "training diverged in epoch")
    assert not (out / "final.pt").exists()
    for ckpt in (out / "checkpoints").glob("*.pt"):  # the loss may stay finite while a statistic is not: none saved
        state = torch.load(ckpt, weights_only=True)["model_state"]
        assert all(t.isfinite().all() for t in state.values() if t.is_floating_point()), ckpt
        assert f"the last good checkpoint is {ckpt}" in r.stderr
    strict_json((out / "config.json").read_text())
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []:
        strict_json(line)
    one_line(cli("train", "--lr", "inf", "--out", str(tmp_path / "x")), "argument --lr: must be finite")


def test_an_all_nan_surface_plots_to_one_line(tmp_path):
    from landscape.io.surface import create_surface

    w = create_surface(tmp_path / "nan.h5", np.linspace(-1, 1, 3), None, ["train"], [{"w": torch.zeros(1)}], {})
    w.write([(k, {"train_loss": float("nan"), "train_acc": float("nan")}) for k in range(3)])
    w.close()
    one_line(cli("plot", str(tmp_path / "nan.h5"), "--out", str(tmp_path / "fig")), "no finite value to draw")


# --- 7 and 8. true messages instead of tracebacks ---------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["explore", ".", "--port", "99999"], "argument --port: must be <= 65535"),
        (["surface", "{ckpt}", "--device", "bogus", "--out", "{tmp}/s.h5"], "device 'bogus': expected auto, cpu"),
        (["train", "--model-arg", "width=-3", "--out", "{tmp}/run"], "cannot be built with {'width': -3}"),
        (
            ["surface", "{ckpt}", "--x", "-1:1:100000", "--y", "-1:1:100000", "--out", "{tmp}/s.h5"],
            "more than 10,000,000",
        ),
        (["surface", "{ckpt}", "--out", "/proc/nope/s.h5", "--samples", "5", "--x", "-1:1:2"], "error:"),
        (["train", "--method", "damp", "--num-splits", "200", "--out", "{tmp}/run"], "more sub-batches than the 128"),
        (["hessian", "{ckpt}", "--tol", "-1", "--out", "{tmp}/h.h5"], "argument --tol: must be > 0"),
        (["sweep", "{ckpt}", "--eta", "-1", "--out", "{tmp}/w.h5"], "argument --eta: must be >= 0"),
        (["robustness", "{ckpt}", "--workers", "0", "--out", "{tmp}/r.h5"], "argument --workers: must be >= 1"),
        (["demo", "--surface-steps", "0"], "argument --surface-steps: must be >= 2"),
        (["hessian", "{ckpt}", "--top-k", "100000", "--samples", "10", "--out", "{tmp}/h.h5"], "more eigenpairs than"),
        (["plot", "{tmp}", "--out", "{tmp}/fig"], "is a folder"),
        (["surface", "{tmp}", "--x", "-1:1:3", "--out", "{tmp}/s.h5"], "is a folder"),  # a folder for the checkpoint
        (
            ["surface", "{ckpt}", "--x", "-1:1:3", "--y", "-1:1:3", "--dim", "1", "--out", "{tmp}/s.h5"],
            "--y is for a 2-D surface",
        ),
        (["surface", "{ckpt}", "--x", "-1:1:3", "--orthogonal", "--out", "{tmp}/s.h5"], "--orthogonal makes the y"),
        (
            ["surface", "{ckpt}", "--x", "-1:1:3", "--directions", "hessian", "--norm", "layer", "--out", "{tmp}/s.h5"],
            "--norm shape random directions; --directions hessian",
        ),
        (["trajectory", "{ckpt}", "--out", "{tmp}/t.h5"], "trajectory takes a run's folder"),
        (["train", "--clip-grad-norm", "-1", "--out", "{tmp}/run"], "argument --clip-grad-norm: must be > 0"),
        (["train", "--seeds", "0-x", "--out", "{tmp}/run"], "expected seeds like 0,1,2 or 0-4"),
        (["train", "--seeds", "1,1", "--out", "{tmp}/run"], "expected distinct seeds"),
        (["train", "--seed", "3", "--seeds", "0-1", "--out", "{tmp}/run"], "--seed and --seeds exclude each other"),
        (["compare", "{run}", "--baseline", "nope", "--no-calibration", "--out", "{tmp}/rep"], "no group 'nope'"),
    ],
)
def test_careless_input_gets_one_line(runs, tmp_path, args, message):
    args = [a.format(ckpt=runs / "erm" / "final.pt", run=runs / "erm", tmp=tmp_path) for a in args]
    one_line(cli(*args), message)


def test_resume_of_an_empty_or_foreign_file_says_so_and_leaves_it(runs, tmp_path):
    ckpt = str(runs / "erm" / "final.pt")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    one_line(cli("surface", ckpt, "--x", "-1:1:3", "--out", str(empty), "--resume"), "an empty file (0 bytes)")
    assert empty.read_bytes() == b""
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
    one_line(
        cli("surface", ckpt, "--x", "-1:1:3", "--out", str(foreign), "--resume"),
        "not a result file this toolkit can resume",
    )
    with h5py.File(foreign, "w") as f:  # ours in every attribute, but no 'computed' mask
        f.attrs["kind"] = "surface"
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.zeros(3)
    with pytest.raises(ValueError, match="has no 'computed' dataset"):
        read_surface(foreign)


def test_a_malformed_cifar_batch_and_an_empty_corruption_cache(tmp_path):
    import pickle

    import torch

    from landscape.data.corruptions import corrupted_split
    from landscape.data.formats import read_cifar_batch

    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": np.zeros((3, 10), np.uint8), "labels": [0, 1, 2]}))
    with pytest.raises(ValueError, match="malformed CIFAR batch"):
        read_cifar_batch(batch, "labels")
    batch.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="not a CIFAR python batch"):
        read_cifar_batch(batch, "labels")
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    good = corrupted_split(images, "k", "contrast", 3, cache=tmp_path / "cache")
    cached = tmp_path / "cache" / "k" / "contrast_s3_seed0.npy"
    cached.write_bytes(b"")  # a killed writer's empty file
    again = corrupted_split(images, "k", "contrast", 3, cache=tmp_path / "cache")
    assert torch.equal(again, good) and cached.stat().st_size > 0  # regenerated and cached again


# --- 9. download links ------------------------------------------------------------------------------


def test_download_links_survive_odd_file_names(analysed, tmp_path):
    import shutil

    from landscape.apps.explorer.app import create_app

    root = tmp_path / "root"
    (root / "odd").mkdir(parents=True)
    name = "a #1?b %41\nc.h5"
    shutil.copy(analysed / "erm" / "surface_2d.h5", root / "odd" / name)
    from landscape.apps.explorer.views import download_href

    app = create_app(root)
    href = download_href(f"odd/{name}")
    assert "#" not in href and "?" not in href and "\n" not in href
    got = app.server.test_client().get(href)
    assert got.status_code == 200 and got.data == (root / "odd" / name).read_bytes()


# --- 11. temporary files of dead writers --------------------------------------------------------------


def test_resume_removes_the_temporary_files_of_killed_writers(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--epochs", "2", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    (out / "final.pt").unlink()
    stale = [out / ".final.pt.tmp999999999", out / "checkpoints" / ".epoch_003.pt.tmp999999998"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    mine = out / f".config.json.tmp{os.getpid()}"  # a live writer's file stays
    mine.write_text("{}")
    r = cli("train", "--epochs", "2", "--no-progress", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in stale) and mine.exists() and (out / "final.pt").exists()
