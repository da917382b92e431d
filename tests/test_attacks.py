"""The second hardening round (issue 27) as a table: each careless or hostile input gets exit code 2 and one line
naming the problem (or, from Python, one ValueError naming the argument), or the documented result; no case
writes over an input or a checkpoint (file hashes are compared before and after)."""

import hashlib
import json
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import cli, live_writer

import landscape
from landscape._system.files import exclusive
from landscape.apps.explorer.app import create_app
from landscape.apps.explorer.catalog import Catalog
from landscape.io import read_surface

SECRET = "TOP-SECRET-7d1f"


def one_line(r, message, code=2):
    err = r.stderr.strip()
    assert r.returncode == code and message in err and len(err.splitlines()) == 1, (r.returncode, err[-2000:])


def in_process(capsys, *args) -> types.SimpleNamespace:
    """The ``landscape`` command's entry point (what the console script calls) in this process: the exit status
    and what it printed, without a new interpreter's torch import per case."""
    from landscape.apps.cli.__main__ import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def victim(runs, tmp_path_factory):
    """A copy of a finished run (its final.pt, epoch checkpoints) and a Hessian result beside it."""
    import shutil

    root = tmp_path_factory.mktemp("victim")
    shutil.copytree(runs / "erm", root / "run")
    with h5py.File(root / "hessian.h5", "w") as f:
        f.attrs["kind"] = "hessian"
        f["eigenvalues"] = np.ones(1)
    return root


# --- the command line: one line and exit 2, before any work ------------------------------------------------------

CASES = [
    # outputs never replace inputs, checkpoints or results of another kind (with or without --overwrite)
    (["surface", "{run}/final.pt", "--x=-1:1:3", "--overwrite", "--out", "{run}/final.pt"], "never written as a"),
    (["surface", "{run}/final.pt", "--x=-1:1:3", "--overwrite", "--out", "{run}/checkpoints/epoch_001.pt"], "refused"),
    (["surface", "{run}/final.pt", "--x=-1:1:3", "--out", "{run}/checkpoints/new.h5"], "checkpoints/ folder"),
    (["surface", "{run}/final.pt", "--x=-1:1:3", "--overwrite", "--out", "{root}/hessian.h5"], "is a hessian result"),
    (["hessian", "{run}/final.pt", "--overwrite", "--samples", "10", "--out", "{run}/config.json"], "not a result"),
    (["sweep", "{run}/final.pt", "--radii", "0:1:3", "--overwrite", "--out", "{run}/final.pt"], "never written as a"),
    # every size bounded before work starts
    (["hessian", "{run}/final.pt", "--top-k", "24058", "--samples", "10", "--out", "{tmp}/h.h5"], "top_k 24,058 is"),
    (
        ["hessian", "{run}/final.pt", "--trace", "1000000000", "--samples", "10", "--out", "{tmp}/h.h5"],
        "trace 1,000,000",
    ),
    (["sweep", "{run}/final.pt", "--radii", "0:1:3", "--trials", "100000000", "--out", "{tmp}/s.h5"], "trials 100,0"),
    (["sweep", "{run}/final.pt", "--radii", "0:1:100000000", "--out", "{tmp}/s.h5"], "NUM 100,000,000 is more"),
    (["train", "--crop-padding", "100000", "--out", "{tmp}/r"], "--crop-padding 100000"),
    (["train", "--crop-padding", "20", "--out", "{tmp}/r"], "more than the 8-pixel images"),
    (["train", "--model", "mlp", "--model-arg", "width=100000000", "--out", "{tmp}/r"], "more than 2,000,000,000"),
    (["train", "--model", "mlp", "--model-arg", "depth=-2", "--out", "{tmp}/r"], "depth=-2 must be >= 1"),
    # list options checked as a whole when parsed
    (["demo", "--methods", "erm,bogus", "--out", "{tmp}/d"], "unknown bogus"),
    (["demo", "--methods=", "--out", "{tmp}/d"], "expected comma-separated names"),
    (["demo", "--severities", "0", "--out", "{tmp}/d"], "must lie in 1..5"),
    (["train", "--seeds", "0-", "--out", "{tmp}/r"], "expected seeds like"),
    (["train", "--seeds", "1", "--seed", "0", "--out", "{tmp}/r"], "--seed and --seeds exclude each other"),
    (["train", "--augment-corruption", "fog", "--augment-severity=", "--out", "{tmp}/r"], "must lie in 1..5"),
    (["surface", "{run}/final.pt", "--x=-1:1:3", "--split=", "--out", "{tmp}/s.h5"], "expected names like train"),
    # --nproc: checked before torchrun starts
    (["train", "--nproc", "3", "--out", "{tmp}/r"], "must divide among 3 ranks"),
    (["train", "--method", "damp", "--num-splits", "3", "--nproc", "2", "--out", "{tmp}/r"], "do not divide among 2"),
    # an option without its companion is refused, not ignored
    (["train", "--sync-bn", "--out", "{tmp}/r"], "--sync-bn is for several processes"),
    (["hessian", "{run}/final.pt", "--density-probes", "3", "--out", "{tmp}/h.h5"], "add --density"),
    (["hessian", "{run}/final.pt", "--trace-method", "hutchinson", "--out", "{tmp}/h.h5"], "add --trace"),
    (["plot", "{root}/hessian.h5", "--zmax", "3", "--out", "{tmp}/f"], "add --vtp"),
    (["plot", "{root}/hessian.h5", "--vtp", "--out", "{tmp}/f"], "--vtp exports 2-D surfaces"),
    (["robustness", "{run}/final.pt", "--c-root", "{tmp}", "--out", "{tmp}/r.h5"], "--c-root is for --source"),
    # degenerate inputs
    (["compare", "{run}", "{run}", "--out", "{tmp}/rep", "--no-calibration"], "is named twice"),
    (["trajectory", "{root}/two", "--out", "{tmp}/t.h5"], "needs >= 3"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_a_bad_command_line_gets_one_line_and_touches_nothing(victim, tmp_path, args, message, capsys):
    two = victim / "two"  # a run folder with exactly two epoch checkpoints
    if not two.exists():
        (two / "checkpoints").mkdir(parents=True)
        for name in ("final.pt", "checkpoints/epoch_001.pt", "checkpoints/epoch_002.pt"):
            (two / name).write_bytes((victim / "run" / name).read_bytes())
    files = sorted(p for p in victim.rglob("*") if p.is_file())
    before = {p: digest(p) for p in files}
    fill = {"run": str(victim / "run"), "root": str(victim), "tmp": str(tmp_path)}
    one_line(in_process(capsys, *[a.format(**fill) for a in args]), message)
    assert {p: digest(p) for p in files} == before
    assert not any((tmp_path / n).exists() for n in ("h.h5", "s.h5", "r", "d", "t.h5", "f", "rep"))


def test_nproc_with_cuda_on_a_machine_without_it(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_line(cli("train", "--nproc", "2", "--device", "cuda", "--out", str(tmp_path / "r")), "CUDA is not available")


def test_a_problem_file_that_exits_is_named(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nsys.exit(0)\n")
    r = cli("hessian", "--problem", f"{script}:problem", "--out", str(tmp_path / "h.h5"))
    one_line(r, "called sys.exit(0)")
    assert not (tmp_path / "h.h5").exists()


# --- checkpoints: one validator for every reader -----------------------------------------------------------------


def broken(ck: dict, how: str) -> dict:
    ck = {k: v for k, v in ck.items()}
    if how == "no model":
        del ck["model"]
    elif how == "no model_state":
        del ck["model_state"]
    elif how == "no dataset":
        del ck["dataset"]
    elif how == "no kwargs":
        ck["model"] = {"name": ck["model"]["name"]}
    elif how == "string model":
        ck["model"] = "small_cnn"
    elif how == "unknown model":
        ck["model"] = {**ck["model"], "name": "resnet9000"}
    elif how == "unknown dataset":
        ck["dataset"] = {**ck["dataset"], "name": "imagenet-z"}
    elif how == "huge width":
        ck["model"] = {**ck["model"], "kwargs": {**ck["model"]["kwargs"], "width": 10**7}}
    return ck


@pytest.mark.parametrize(
    "how,field",
    [
        ("no model", "'model' is missing"),
        ("no model_state", "'model_state' is missing"),
        ("no dataset", "'dataset' is missing"),
        ("no kwargs", "'model.kwargs' is missing"),
        ("string model", "'model' is a str, not a dict"),
        ("unknown model", "'model.name' is 'resnet9000'"),
        ("unknown dataset", "'dataset.name' is 'imagenet-z'"),
        ("huge width", "parameters, more than 2,000,000,000"),
    ],
)
def test_a_malformed_checkpoint_is_named_by_every_reader(runs, tmp_path, how, field):
    ck = torch.load(runs / "erm" / "final.pt", weights_only=True)
    bad = tmp_path / "bad.pt"
    torch.save(broken(ck, how), bad)
    one_line(cli("hessian", str(bad), "--samples", "10", "--out", str(tmp_path / "h.h5")), field)
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        landscape.Problem.from_checkpoint(bad)
    assert not (tmp_path / "h.h5").exists()


# --- training never writes or calls good a checkpoint with non-finite values -------------------------------------


@pytest.mark.parametrize("args", [["--method", "damp", "--sigma", "50"], ["--method", "asam", "--rho", "1e6"]])
def test_a_run_whose_statistics_blow_up_stops_and_keeps_only_finite_checkpoints(tmp_path, args):
    out = tmp_path / "run"
    r = cli("train", *args, "--epochs", "10", "--no-progress", "--out", str(out))
    one_line(r, "training diverged in epoch")
    assert not (out / "final.pt").exists()
    for ckpt in (out / "checkpoints").glob("*.pt"):
        state = torch.load(ckpt, weights_only=True)["model_state"]
        assert all(t.isfinite().all() for t in state.values() if t.is_floating_point()), ckpt


# --- the Python API: one ValueError naming the argument ----------------------------------------------------------


def tensors():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"device": "bogus"}, "device 'bogus'"),
        ({"device": "meta"}, "meta device"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"params": 5}, "params: expected"),
        ({"loss": lambda model, batch: model(batch[0]).mean().to(torch.complex64)}, "loss: returned a complex"),
    ],
)
def test_bad_problem_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        landscape.Problem(nn.Linear(4, 2), tensors(), **kwargs)


def test_cuda_on_a_cpu_build_and_a_meta_model_are_named():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            landscape.Problem(nn.Linear(4, 2), tensors(), device="cuda")
    with torch.device("meta"):
        model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="meta device"):
        landscape.Problem(model, tensors())


def test_a_nan_problem_is_refused_with_its_batch_and_cause():
    x, y = tensors()
    x[13, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data\['train'\]: the loss .* is nan on batch 4 \(its inputs hold NaN"):
        landscape.Problem(nn.Linear(4, 2), (x, y), batch_size=4)
    with pytest.raises(ValueError, match="on batch 1 \\(the model or the loss"):
        landscape.Problem(nn.Linear(4, 2), tensors(), lambda model, b: model(b[0]).mean() * float("nan"))


def test_grid_coordinates_must_be_one_dimensional():
    p = landscape.Problem(nn.Linear(4, 2), tensors())
    with pytest.raises(ValueError, match="1-D sequence"):
        landscape.surface(p, np.zeros((2, 2)), progress=False)


def test_a_loss_linear_in_some_parameters_has_zero_curvature_there():
    """Dense float64 Hessian of a loss with a term linear in one parameter: its row and column are zero."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1).double()
            self.shift = nn.Parameter(torch.zeros(2, dtype=torch.float64))

        def forward(self, inputs):
            return torch.tanh(self.lin(inputs))

    def loss(model, batch):
        return ((model(batch[0]) - batch[1]) ** 2).mean() + model.shift.sum()

    net = Net()
    h = landscape.hessian(landscape.Problem(net, (x, y), loss), top_k=2, trace=9, progress=False)
    flat = [p.detach().clone() for p in net.parameters()]  # shift, lin.weight, lin.bias

    def f(shift, w, b):
        return ((torch.tanh(x @ w.T + b) - y) ** 2).mean() + shift.sum()

    blocks = torch.autograd.functional.hessian(f, tuple(flat))
    sizes = [p.numel() for p in flat]
    dense = torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(3)], 1) for i in range(3)])
    assert torch.all(dense[:2] == 0) and torch.all(dense[:, :2] == 0)
    exact = torch.linalg.eigvalsh(dense).flip(0)[:2].numpy()
    np.testing.assert_allclose(h.eigenvalues, exact, rtol=1e-6)


def test_identical_and_collinear_snapshots_are_refused(tmp_path):
    net = nn.Linear(4, 2)
    p = landscape.Problem(net, tensors())
    with pytest.raises(ValueError, match="same weights"):
        landscape.trajectory(p, [net.state_dict()] * 3, progress=False)
    moved = {k: v + 1 for k, v in net.state_dict().items()}
    further = {k: v + 2 for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="lie on one line"):
        landscape.trajectory(p, [further, moved, net.state_dict()], progress=False)


def test_a_diverging_point_is_stored_and_counted(tmp_path):
    """A perturbation under which the loss overflows is stored as such, counted in the file and in a warning."""
    x, y = tensors()
    p = landscape.Problem(nn.Linear(4, 2), (x, y), lambda model, batch: torch.exp(model(batch[0])).mean())
    lines = []
    sw = landscape.sweep(p, [0.0, 1e4], kinds=["random"], trials=2, out=tmp_path / "s.h5", log=lines.append)
    curve = sw.curve("random")
    assert np.isfinite(curve[0]) and not np.isfinite(curve[1])
    assert sw.attrs["nonfinite_points"] == 1 and any("1 sweep points are NaN or infinite" in s for s in lines)


def test_a_radius_beyond_float32_is_refused():
    """sweep --radii 0:1e30:3 reported the unperturbed loss at r = 1e30 (the norm of the perturbation overflowed
    float32, and the projection onto the ball zeroed it)."""
    p = landscape.Problem(nn.Linear(4, 2), tensors())
    with pytest.raises(ValueError, match="a radius of 1e\\+30 is more than"):
        landscape.sweep(p, [0.0, 1e30], kinds=["adversarial"], progress=False)
    with pytest.raises(ValueError, match="rho: a radius of 1e\\+20"):
        landscape.sharpness(p, 1e20)


# --- faults: resume, locks ----------------------------------------------------------------------------------------


def test_hessian_resumes_its_finished_stages(tmp_path, monkeypatch):
    import landscape.curvature as curvature

    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    p = landscape.Problem(net, tensors())
    out = tmp_path / "h.h5"
    real = curvature.estimate_trace

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(curvature, "estimate_trace", killed)
    with pytest.raises(KeyboardInterrupt):
        landscape.hessian(p, top_k=2, trace=30, out=out, progress=False)
    first = landscape.io.read(out)
    assert first.attrs["stages_done"] == ["eigen"] and not first.attrs["complete"] and first.trace is None
    monkeypatch.setattr(curvature, "estimate_trace", real)
    count = {"products": 0}
    original = curvature.CurvatureOperator.matvec

    def counting(self, v):
        count["products"] += 1
        return original(self, v)

    monkeypatch.setattr(curvature.CurvatureOperator, "matvec", counting)
    with pytest.raises(ValueError, match="cannot resume .* seed=0 \\(now 1\\)"):
        landscape.hessian(p, top_k=2, trace=30, seed=1, out=out, resume=True, progress=False)
    done = landscape.hessian(p, top_k=2, trace=30, out=out, resume=True, progress=False)
    assert count["products"] == 30  # the trace only: the eigenpairs were not computed again
    np.testing.assert_array_equal(done.eigenvalues, first.eigenvalues)
    whole = landscape.hessian(p, top_k=2, trace=30, progress=False)
    assert done.attrs["complete"] and done.trace == pytest.approx(whole.trace, rel=1e-9)


def test_a_second_writer_is_refused_while_the_first_runs(runs, tmp_path):
    target = tmp_path / "run"
    with exclusive(target):
        with pytest.raises(ValueError, match="being written by another job"):
            with exclusive(target):
                pass
        r = cli("train", "--epochs", "1", "--out", str(target))
        one_line(r, "being written by another job")
    with exclusive(target):  # released when the job ends
        pass
    assert not (tmp_path / ".run.lock").exists()


def test_overwrite_does_not_replace_a_file_a_live_job_is_writing(runs, tmp_path):
    out = tmp_path / "s.h5"
    code = f"""
        import numpy as np, torch
        from landscape.io.surface import create_surface
        w = create_surface({str(out)!r}, np.linspace(-1, 1, 3), None, ["train"], [{{"w": torch.zeros(1)}}], {{}})
    """
    with live_writer(code):
        before = digest(out)
        ckpt = str(runs / "erm" / "final.pt")
        r = cli("surface", ckpt, "--x=-1:1:3", "--samples", "20", "--overwrite", "--out", str(out))
        one_line(r, "open for writing by another process")
        assert digest(out) == before


def test_a_full_disk_leaves_no_half_written_report(analysed, tmp_path, monkeypatch):
    import shutil as sh

    from landscape.report import write_report
    from landscape.runs import find_runs

    runs = find_runs([analysed / "erm", analysed / "sam"])
    out = tmp_path / "report"
    usage = sh.disk_usage(tmp_path)
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage._replace(free=2 << 20))  # 2 MiB: less than the report
    with pytest.raises(OSError, match="not enough free space"):
        write_report(runs, out, formats=("png",))
    assert not out.exists() or not any(out.iterdir())


# --- the explorer: nothing behind a link out of ROOT reaches a response ------------------------------------------


@pytest.fixture
def linked_out(analysed, tmp_path):
    """ROOT with a good run, and runs whose config.json, metrics.jsonl and hessian.h5 link to files outside."""
    import shutil

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"method": SECRET, "seed": 0}))
    (outside / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_error": 12.3456, "note": SECRET}) + "\n")
    with h5py.File(outside / "hessian.h5", "w") as f:
        f.attrs["kind"] = "hessian"
        f.attrs["label"] = SECRET
        f["eigenvalues"] = np.array([987654.0])
        f["residuals"] = np.zeros(1)
    root = tmp_path / "root"
    shutil.copytree(analysed / "erm", root / "good")
    for name in ("config.json", "metrics.jsonl"):
        (root / f"bad_{name.split('.')[0]}").mkdir()
        (root / f"bad_{name.split('.')[0]}" / name).symlink_to(outside / name)
    shutil.copytree(analysed / "sam", root / "bad_h5")
    (root / "bad_h5" / "hessian.h5").unlink()
    (root / "bad_h5" / "hessian.h5").symlink_to(outside / "hessian.h5")
    return root


def test_links_out_of_the_root_reach_no_callback(linked_out):
    snap = Catalog(linked_out).scan()
    text = json.dumps(snap)
    assert SECRET not in text and "987654" not in text and "12.3456" not in text
    assert sorted(r["run"] for r in snap["runs"]) == ["bad_h5", "good"]
    reasons = {p["path"]: p["reason"] for p in snap["problems"]}
    assert {"bad_config", "bad_metrics", "bad_h5/hessian.h5"} <= set(reasons)
    assert all("outside" in r for r in reasons.values())
    client = create_app(linked_out).server.test_client()
    body = {
        "output": "..snapshot.data...generation.data...status.children..",
        "outputs": [
            {"id": "snapshot", "property": "data"},
            {"id": "generation", "property": "data"},
            {"id": "status", "property": "children"},
        ],
        "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
        "state": [{"id": "generation", "property": "data", "value": None}],
        "changedPropIds": ["tick.n_intervals"],
    }
    got = client.post("/_dash-update-component", json=body)
    assert got.status_code == 200 and "bad_h5" in got.text and SECRET not in got.text and "987654" not in got.text
    for rel in ("bad_config/config.json", "bad_h5/hessian.h5", "bad_metrics/metrics.jsonl", "good/config.json"):
        assert client.get(f"/files/{rel}").status_code == 404
    assert client.get("/files/good/hessian.h5").status_code == 200


def test_the_server_checks_host_headers_bad_paths_and_sends_security_headers(linked_out):
    client = create_app(linked_out).server.test_client()
    ok = client.get("/", headers={"Host": "127.0.0.1:8050"})
    assert ok.status_code == 200 and ok.headers["X-Content-Type-Options"] == "nosniff"
    assert ok.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in ok.headers["Content-Security-Policy"]
    assert client.get("/", headers={"Host": "evil.example:8050"}).status_code == 400  # DNS rebinding
    for bad in ("/files/..%00", "/files/" + "a" * 5000, "/files/good/%00x.h5", "/files/good"):
        assert client.get(bad).status_code == 404, bad
    anyone = create_app(linked_out, hosts=["*"]).server.test_client()
    assert anyone.get("/", headers={"Host": "lab.example.org"}).status_code == 200


def test_a_file_of_many_links_is_walked_once_per_object_and_bounded(tmp_path, monkeypatch):
    """A crafted file of 100,000 links in one group stalled the first scan for a minute: h5py's visititems_links
    (about half a millisecond a link there) and an object lookup per link. The walk now opens each object once and
    stops past 200,000 links (the time is bench/hdf5_scan.py's, not a test's)."""
    import landscape.io.files as files

    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    with h5py.File(root / "run" / "surface.h5", "w") as f:
        f.attrs["kind"] = "surface"
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        g = f.create_group("g")
        for i in range(20_000):
            g[f"h{i}"] = f["xcoordinates"]  # hard links: one object under 20,001 names
            g[f"s{i}"] = h5py.SoftLink(f"/nowhere{i}")
    opened = []
    real_open = files.h5o.open
    counting = types.SimpleNamespace(open=lambda fid, name: opened.append(name) or real_open(fid, name))
    monkeypatch.setattr(files, "h5o", counting)  # the walk's own opens (h5py's calls are not counted)
    monkeypatch.setattr(h5py.Group, "visititems_links", lambda *a: pytest.fail("the slow per-link walk"))
    assert files.inspect_file(root / "run" / "surface.h5") == ("surface_1d", None)
    assert sorted(opened) == [b"g", b"g/h0"]  # two objects (the dataset by its first name), each opened once
    snap = Catalog(root).scan()
    assert [e["rel"] for e in snap["files"]] == ["run/surface.h5"]
    with h5py.File(root / "run" / "surface.h5", "a") as f:
        for i in range(20_000, 180_001):
            f["g"][f"s{i}"] = h5py.SoftLink("/x")
    snap = Catalog(root).scan()
    assert snap["files"] == [] and "more than 200,000 links" in snap["problems"][0]["reason"]


def test_group_names_are_unique_when_three_settings_do_not_tell_them_apart():
    """Two groups that differ only in a fourth setting showed the same three (``sam (batch_size=128, lr=0.1,
    momentum=0.9)`` twice; AG Grid warned of duplicate row ids)."""
    from landscape.groups import group_runs
    from landscape.runs import Run

    def run(name, **config):
        return Run(name, Path(name), {"method": "sam", "seed": 0, **config}, {}, None, None)

    groups = group_runs(
        [
            run("a", batch_size=128, lr=0.1, momentum=0.9, weight_decay=0.0),
            run("b", batch_size=128, lr=0.1, momentum=0.9, weight_decay=0.1),
            run("c", batch_size=64, lr=0.2, momentum=0.8, weight_decay=0.0),
        ]
    )
    names = [g.name for g in groups]
    assert len(set(names)) == 3 and names[0].endswith("[a]") and names[1].endswith("[b]"), names


def test_links_out_of_the_root_reach_no_page_in_the_browser(browser, linked_out):
    """The page as a user sees it: the good runs listed, the linked-out ones left out with their reason, and no
    byte of the files outside in the page or in any response the browser received."""
    from test_explorer import column, serving, wait_for

    bodies = []
    with serving(linked_out) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("response", lambda r: bodies.append(r.text()) if r.request.resource_type in ("xhr", "fetch") else None)
        page.goto(url)
        page.locator("#runs-summary").click()
        page.wait_for_selector("#runs-table .ag-cell[col-id='run']", timeout=20000)
        wait_for(lambda: sorted(column(page, "runs-table", "run")) == ["bad_h5", "good"])
        wait_for(lambda: "bad_config" in page.inner_text("#problems") and "bad_metrics" in page.inner_text("#problems"))
        assert "a link to a file outside" in page.inner_text("#problems")
        page.locator("#runs-table .ag-cell[col-id='run']", has_text="bad_h5").click()  # its detail: no outside file
        wait_for(lambda: "bad_h5" in page.inner_text("#run-detail"))
        html = page.content()
        page.close()
    assert bodies and all(SECRET not in b and "987654" not in b and "12.3456" not in b for b in bodies + [html])


def test_a_surface_holds_its_directions_after_out_and_when_read_back(tmp_path):
    """Issue 21's finding: ``Surface.directions`` was None after ``out=`` and after ``read_surface``."""
    net = nn.Linear(4, 2)
    p = landscape.Problem(net, tensors())
    s = landscape.surface(p, "-1:1:3", "-1:1:3", out=tmp_path / "s.h5", progress=False)
    memory = landscape.surface(p, "-1:1:3", "-1:1:3", progress=False)
    back = read_surface(tmp_path / "s.h5", directions=True)
    assert len(s.directions) == len(back.directions) == 2 and read_surface(tmp_path / "s.h5").directions is None
    for got in (s.directions, back.directions):
        for d, m in zip(got, memory.directions):
            assert d.keys() == m.keys() and all(torch.equal(d[k], m[k]) for k in d)
