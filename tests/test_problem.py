"""The analyses over a user's own (model, data, loss) against ground truth: hand-computed losses, dense Hessians,
the CLI's files for a checkpoint, streamed = device-resident data, one-line errors, an untouched model."""

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset, TensorDataset

import landscape
from landscape.io import read_surface, read_sweep
from landscape.problem import Problem

ROOT = Path(__file__).resolve().parents[1]


def example(name):
    """An example script as a module (its builders are the problems these tests check)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Net(nn.Module):
    """A user's CNN with BatchNorm and dropout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(self.drop(x.flatten(1)))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:300], dtype=torch.float32).unsqueeze(1) / 16
    return x, torch.tensor(d.target[:300])


@pytest.fixture()
def net(digits):
    torch.manual_seed(0)
    model = Net()
    model.train()
    with torch.no_grad():  # some training-like BatchNorm statistics
        model(digits[0])
    return model.eval()


def by_hand(model, x, y, params=None):
    """The mean cross-entropy and accuracy over the whole data in one batch, model in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = functional_call(model, params or {}, (x,))
    return F.cross_entropy(logits, y).item(), 100.0 * (logits.argmax(1) == y).double().mean().item()


def test_surface_centre_and_points_equal_the_loss_by_hand(net, digits):
    x, y = digits
    loader = DataLoader(TensorDataset(x, y), batch_size=128)  # batches of 128, 128, 44: weighted by size
    s = landscape.surface(landscape.Problem(net, loader), [-0.5, 0.0, 0.5], [-1.0, 0.0], progress=False)
    assert s.values["train_loss"].shape == (2, 3) and s.complete and s.path == ""
    loss, acc = by_hand(net, x, y)
    assert s.values["train_loss"][1, 1] == pytest.approx(loss, rel=1e-6)
    assert s.values["train_acc"][1, 1] == pytest.approx(acc)
    d1, d2 = s.directions
    w0 = {n: p.detach() for n, p in net.named_parameters()}
    for i, j in [(0, 0), (1, 2), (0, 2)]:
        a, b = s.xcoordinates[j], s.ycoordinates[i]
        moved = {n: w0[n] + a * d1[n] + b * d2[n] for n in w0}
        assert s.values["train_loss"][i, j] == pytest.approx(by_hand(net, x, y, moved)[0], rel=1e-5)


def test_streamed_loader_and_device_resident_tensors_give_the_same_numbers(net, digits):
    x, y = digits
    loader = DataLoader(TensorDataset(x, y), batch_size=100)
    problems = [
        landscape.Problem(net, (x, y), batch_size=100),
        landscape.Problem(net, loader, cache=False),
        landscape.Problem(net, loader, cache=True),
    ]
    assert [p.splits["train"].streamed for p in problems] == [False, True, False]
    surfaces = [landscape.surface(p, "-1:1:5", progress=False) for p in problems]
    for s in surfaces[1:]:
        np.testing.assert_array_equal(s.values["train_loss"], surfaces[0].values["train_loss"])
    tops = [landscape.hessian(p, top_k=2, progress=False).eigenvalues for p in problems]
    np.testing.assert_allclose(tops[1], tops[0], rtol=1e-6)
    np.testing.assert_allclose(tops[2], tops[0], rtol=1e-6)
    sweeps = [
        landscape.sweep(p, [0, 0.1], kinds=["random", "adversarial"], trials=2, steps=2, progress=False)
        for p in problems
    ]
    np.testing.assert_allclose(sweeps[1].values["loss_mean"], sweeps[0].values["loss_mean"], rtol=1e-6)


def dense_hessian(loss_of_params, params):
    """The dense Hessian of a function of a dict of parameters, over one flat vector."""
    names, shapes = list(params), [p.shape for p in params.values()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def f(flat):
        chunks = flat.split([int(np.prod(s)) for s in shapes])
        return loss_of_params({n: c.view(s) for n, c, s in zip(names, chunks, shapes)})

    return torch.autograd.functional.hessian(f, flat0)


def test_mse_regression_hessian_trace_and_gauss_newton_equal_dense_ones():
    problem = example("regression_mlp").build(steps=50, width=8)
    model = problem.model.double()
    x, y = (t.double() for t in (problem.splits["train"].tensors.x, problem.splits["train"].tensors.y))
    problem = landscape.Problem(model, (x, y), nn.MSELoss(), batch_size=128)  # 442 rows: batches 128, ..., 58
    params = {n: p.detach() for n, p in model.named_parameters()}
    dense = dense_hessian(lambda p: F.mse_loss(functional_call(model, p, (x,)), y), params)
    evals = torch.linalg.eigvalsh(dense).flip(0).numpy()
    h = landscape.hessian(problem, top_k=4, trace=3 * dense.shape[0], tol=1e-8, progress=False)
    np.testing.assert_allclose(h.eigenvalues, evals[:4], rtol=1e-6)
    assert h.trace == pytest.approx(float(torch.trace(dense)), rel=1e-8)  # Hutch++ with 3n products is exact
    flat0 = torch.cat([p.reshape(-1) for p in params.values()])
    shapes = [p.shape for p in params.values()]

    def outputs_of(flat):
        chunks = flat.split([int(np.prod(s)) for s in shapes])
        return functional_call(model, {n: c.view(s) for n, c, s in zip(params, chunks, shapes)}, (x,))

    J = torch.autograd.functional.jacobian(outputs_of, flat0).reshape(len(x), -1)  # (N, P): one output each
    gauss_newton = 2 * J.T @ J / len(x)  # MSE's Hessian in the outputs is 2/N
    g = landscape.hessian(problem, top_k=3, curvature="ggn", tol=1e-8, progress=False)
    np.testing.assert_allclose(g.eigenvalues, torch.linalg.eigvalsh(gauss_newton).flip(0)[:3].numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_lm():
    lm = example("tiny_transformer")
    model, data = lm.build(context=12, width=8, hidden=8, steps=40, limit=24)
    return lm, model.double(), data


def test_tiny_transformer_hessian_equals_the_dense_one_whole_and_per_block(tiny_lm):
    lm, model, data = tiny_lm
    problem = landscape.Problem(model, data, lm.lm_loss)
    everything = {k: torch.cat([b[k] for b in data]) for k in data[0]}  # one batch: the mean over all tokens
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_of(p):
        return functional_call(model, p, (), everything).loss

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        dense = dense_hessian(loss_of, params)
    assert problem.evaluate("train")["loss"] == pytest.approx(loss_of(params).item(), rel=1e-10)
    evals = torch.linalg.eigvalsh(dense).flip(0).numpy()
    h = landscape.hessian(problem, top_k=3, tol=1e-8, progress=False)
    np.testing.assert_allclose(h.eigenvalues, evals[:3], rtol=1e-6)
    # the attention block alone: its rows and columns of the dense Hessian
    block = landscape.Problem(model, data, lm.lm_loss, params=model.block.self_attn)
    names = list(params)
    index = np.concatenate(
        [
            np.arange(sum(params[m].numel() for m in names[:i]), sum(params[m].numel() for m in names[: i + 1]))
            for i, n in enumerate(names)
            if n in block.param_names
        ]
    )
    sub = dense[np.ix_(index, index)]
    hb = landscape.hessian(block, top_k=2, trace=3 * len(index), tol=1e-8, progress=False)
    np.testing.assert_allclose(hb.eigenvalues, torch.linalg.eigvalsh(sub).flip(0)[:2].numpy(), rtol=1e-6)
    assert hb.trace == pytest.approx(float(torch.trace(sub)), rel=1e-8)
    assert hb.attrs["num_params"] == len(index) and all(n.startswith("block.self_attn.") for n in hb.attrs["params"])
    zero = [n for n in names if n not in block.param_names]
    assert all(float(hb.eigenvectors[0][n].abs().sum()) == 0 for n in zero)  # eigenvectors live on the block


def test_checkpoint_problem_with_the_api_writes_the_clis_files_bit_for_bit(runs, tmp_path):
    from landscape.apps.cli.__main__ import main

    ckpt = runs / "sam" / "final.pt"
    cli, api = tmp_path / "cli", tmp_path / "api"  # the same file names: surface files store their own
    common = ["--samples", "150", "--no-progress"]
    assert (
        main(
            [
                "surface",
                str(ckpt),
                "--x",
                "-1:1:5",
                "--y",
                "-1:1:3",
                "--split",
                "train,test",
                *common,
                "--out",
                str(cli / "s.h5"),
            ]
        )
        == 0
    )
    assert main(["hessian", str(ckpt), "--top-k", "2", "--trace", "8", *common, "--out", str(cli / "h.h5")]) == 0
    assert (
        main(
            [
                "sweep",
                str(ckpt),
                "--radii",
                "0:0.2:3",
                "--trials",
                "2",
                "--steps",
                "2",
                *common,
                "--out",
                str(cli / "w.h5"),
            ]
        )
        == 0
    )
    both = landscape.Problem.from_checkpoint(ckpt, "train,test", samples=150, device="cpu")
    landscape.surface(both, np.linspace(-1, 1, 5), np.linspace(-1, 1, 3), out=api / "s.h5", progress=False)
    train = landscape.Problem.from_checkpoint(ckpt, samples=150, device="cpu")
    landscape.hessian(train, top_k=2, trace=8, out=api / "h.h5", progress=False)
    landscape.sweep(train, "0:0.2:3", trials=2, steps=2, out=api / "w.h5", progress=False)
    for name in ("s.h5", "h.h5", "w.h5"):
        assert_same_file(cli / name, api / name)


def assert_same_file(a, b):
    """Every dataset bit for bit, every attribute equal but the creation time."""
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert {k: v for k, v in fa.attrs.items() if k != "created"}.keys() == {k for k in fb.attrs if k != "created"}
        for k in fa.attrs:
            if k != "created":
                np.testing.assert_array_equal(fa.attrs[k], fb.attrs[k], err_msg=k)
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            if isinstance(fa[name], h5py.Dataset):
                np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)


def test_user_problem_files_say_what_they_hold_and_resume(net, digits, tmp_path):
    x, y = digits
    problem = landscape.Problem(net, {"train": (x[:200], y[:200]), "val": (x[200:], y[200:])}, label="my cnn")
    out = tmp_path / "s.h5"
    landscape.surface(problem, "-1:1:4", out=out, progress=False)
    s = read_surface(out)
    assert s.attrs["source"] == "python" and s.attrs["label"] == "my cnn" and s.attrs["model"] == "Net"
    assert s.attrs["num_params"] == sum(p.numel() for p in net.parameters()) and list(s.attrs["data_size"]) == [
        200,
        100,
    ]
    assert list(s.values) == ["train_loss", "train_acc", "val_loss", "val_acc"] and s.splits == ["train", "val"]
    with h5py.File(out, "r+") as f:  # as if killed after two points
        f["computed"][2:] = 0
    again = landscape.surface(problem, "-1:1:4", out=out, resume=True, progress=False)
    np.testing.assert_array_equal(again.values["val_loss"], s.values["val_loss"])
    with torch.no_grad():
        net.fc.bias.add_(1.0)  # another model: the stored digest no longer matches
    with pytest.raises(ValueError, match="made with other model weights"):
        landscape.surface(problem, "-1:1:4", out=out, resume=True, progress=False)


def state_of(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        next(model.parameters()).device,
    )


def test_every_analysis_leaves_the_model_exactly_as_it_found_it(net, digits, tmp_path):
    x, y = digits
    net.train()
    net.bn.eval()  # mixed modes
    net.conv.bias.requires_grad_(False)
    before = state_of(net)
    problem = landscape.Problem(net, (x, y), batch_size=64)
    snapshot = landscape.save_snapshot(net, tmp_path / "snaps", 1)
    other = Net()
    calls = [
        lambda: landscape.surface(problem, "-1:1:3", "-1:1:2", bn="recompute", dir_type="states", progress=False),
        lambda: landscape.surface(problem, "-1:1:3", directions="hessian", progress=False),
        lambda: landscape.hessian(
            problem, top_k=2, trace=4, density=True, density_probes=1, density_steps=4, progress=False
        ),
        lambda: landscape.hessian(problem, top_k=1, curvature="ggn", progress=False),
        lambda: landscape.sweep(problem, [0, 0.3], trials=2, steps=2, progress=False),
        lambda: landscape.sharpness(problem, 0.1, "adaptive", steps=2),
        lambda: landscape.interpolate(problem, other, "0:1:3", progress=False),
        lambda: landscape.trajectory(
            problem, [other.state_dict(), snapshot, Net()], "-1:1:2", "-1:1:2", progress=False
        ),
    ]
    for call in calls:
        call()
        after = state_of(net)
        assert all(torch.equal(before[0][k], v) for k, v in after[0].items())
        assert after[1:] == before[1:]


def test_interpolation_reaches_the_other_model_and_trajectory_projects_its_path(net, digits, tmp_path):
    x, y = digits
    torch.manual_seed(1)
    other = Net().eval()
    problem = landscape.Problem(net, (x, y))
    line = landscape.interpolate(problem, other, "0:1:3", progress=False)
    assert line.values["train_loss"][2] == pytest.approx(by_hand(other, x, y)[0], rel=1e-5)
    folder = tmp_path / "snapshots"
    g = torch.Generator().manual_seed(0)
    for step in (1, 2, 10):  # numeric order, not name order
        with torch.no_grad():
            for p in other.parameters():
                p.mul_(0.5).add_(
                    0.5 * dict(net.named_parameters())[[n for n, q in other.named_parameters() if q is p][0]]
                )
                if step == 2:  # off the line towards w0: a path the PCA can find a plane for
                    p.add_(0.02 * torch.randn(p.shape, generator=g))
        landscape.save_snapshot(other, folder, step)
    t = landscape.trajectory(problem, folder, progress=False)
    assert t.values["train_loss"].shape == (21, 21) and len(t.extras["proj_xcoord"]) == 3
    assert np.all(np.diff(np.hypot(t.extras["proj_xcoord"], t.extras["proj_ycoord"])) < 0)  # converging on w0


def test_dict_batches_with_labels_and_a_torch_loss(digits):
    x, y = digits

    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, pixels, scale):
            return self.fc(pixels.flatten(1)) * scale

    torch.manual_seed(0)
    model = Keyword()
    batches = [
        {"pixels": x[i : i + 100], "scale": torch.tensor(2.0), "labels": y[i : i + 100]} for i in range(0, 300, 100)
    ]
    values = landscape.Problem(model, batches).evaluate("train")
    with torch.no_grad():
        logits = model(x, torch.tensor(2.0))
    assert values["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


class Augmented(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda m, x, y: Problem(m, DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True)),
            "the DataLoader shuffles (shuffle=True)",
        ),
        (
            lambda m, x, y: Problem(m, DataLoader(Augmented(x, y), batch_size=50)),
            "a second pass gave other batches (first at batch 0: random augmentation or sampling)",
        ),
        (lambda m, x, y: Problem(m, (x, y), mode="train"), "dropout is active in train mode (Dropout at 'drop')"),
        (lambda m, x, y: Problem(m, (x, y), nn.CrossEntropyLoss(reduction="none")), "reduction='mean'"),
        (
            lambda m, x, y: Problem(m, (x, y), lambda out, t: F.cross_entropy(out, t, reduction="none")),
            "loss: returned (300,), not a scalar tensor",
        ),
        (lambda m, x, y: Problem(m, (b for b in [(x, y)])), "is an iterator, good for one pass only"),
        (lambda m, x, y: Problem(nn.Linear(5, 2), (x, y)), "model/loss failed on a batch: RuntimeError"),
        (lambda m, x, y: Problem(m, (x, y), params="nothing.*"), "no parameter name matches 'nothing.*'"),
        (lambda m, x, y: Problem(m, {"train": x}), "its values here are tensors"),
        (lambda m, x, y: Problem(m, (x, y[:10])), "300 inputs but 10 targets"),
        (lambda m, x, y: Problem(m, TensorDataset(x, y)), "wrap it in DataLoader(dataset, batch_size=...)"),
    ],
)
def test_bad_problems_get_one_clear_line(net, digits, make, message):
    with pytest.raises(ValueError) as info:
        make(net, *digits)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def write_problem_file(path, body):
    path.write_text("import torch, torch.nn as nn\nimport landscape\n" + body)
    return path


def test_cli_takes_a_users_problem_file(tmp_path, capsys):
    from landscape.apps.cli.__main__ import main

    f = write_problem_file(
        tmp_path / "mine.py",
        (
            "torch.manual_seed(0)\n"
            "x, y = torch.randn(64, 5), torch.randn(64, 1)\n"
            "def problem():\n"
            "    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))\n"
            "    return landscape.Problem(net, (x, y), nn.MSELoss(), label='regression')\n"
        ),
    )
    spec = f"{f}:problem"
    assert main(["surface", "--problem", spec, "--x", "-1:1:5", "--no-progress", "--out", str(tmp_path / "s.h5")]) == 0
    s = read_surface(tmp_path / "s.h5")
    assert s.complete and list(s.values) == ["train_loss"] and s.attrs["label"] == "regression"
    assert main(["hessian", "--problem", spec, "--top-k", "2", "--no-progress", "--out", str(tmp_path / "h.h5")]) == 0
    assert "largest eigenvalues" in capsys.readouterr().out
    assert (
        main(
            [
                "sweep",
                "--problem",
                spec,
                "--radii",
                "0:0.5:3",
                "--trials",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path / "w.h5"),
            ]
        )
        == 0
    )
    assert np.isnan(read_sweep(tmp_path / "w.h5").values["acc_mean"]).all()  # a regression has no accuracy
    assert main(["plot", str(tmp_path / "s.h5"), str(tmp_path / "w.h5"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig").is_dir() and not list((tmp_path / "fig").glob("*sweep_acc*"))


@pytest.mark.parametrize(
    "body,spec,message",
    [
        ("", "missing.py:problem", "'missing.py' does not exist"),
        ("problem = (\n", "{f}:problem", "SyntaxError"),
        ("raise RuntimeError('no data here')\n", "{f}:problem", "raised RuntimeError: no data here"),
        ("other = 1\n", "{f}:problem", "defines no 'problem' (it has"),
        ("problem = 42\n", "{f}:problem", "problem is a int, not a landscape.Problem"),
        (
            "def problem():\n    return landscape.Problem(nn.Linear(2, 2), torch.utils.data.DataLoader("
            "torch.utils.data.TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=torch.long)), shuffle=True))\n",
            "{f}:problem",
            "problem(): data['train']: the DataLoader shuffles",
        ),
        ("", "{f}", "expects FILE.py:NAME"),
        ("", "no_such_module_xyz:problem", "no file or module 'no_such_module_xyz'"),
    ],
)
def test_cli_problem_errors_are_one_line(tmp_path, capsys, body, spec, message):
    from landscape.apps.cli.__main__ import main

    f = write_problem_file(tmp_path / "p.py", body)
    assert main(["surface", "--problem", spec.format(f=f), "--no-progress", "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_cli_problem_refuses_checkpoint_options(tmp_path, capsys, runs):
    from landscape.apps.cli.__main__ import main

    f = write_problem_file(tmp_path / "p.py", "problem = None\n")
    assert main(["surface", "--problem", f"{f}:problem", "--samples", "10", "--out", str(tmp_path / "s.h5")]) == 2
    assert "--samples set the checkpoint's data" in capsys.readouterr().err
    assert (
        main(["surface", str(runs / "erm" / "final.pt"), "--problem", f"{f}:problem", "--out", str(tmp_path / "s.h5")])
        == 2
    )
    assert "not both" in capsys.readouterr().err
    assert main(["hessian", "--out", str(tmp_path / "h.h5")]) == 2
    assert "give a checkpoint, or --problem" in capsys.readouterr().err


def test_a_users_directions_and_a_block_of_parameters(net, digits):
    x, y = digits
    problem = landscape.Problem(net, (x, y), params=net.fc)
    assert problem.param_names == ["fc.weight", "fc.bias"]
    d = {"fc.weight": torch.ones_like(net.fc.weight) * 0.01}
    s = landscape.surface(problem, [0.0, 1.0], directions=[d], progress=False)
    moved = {"fc.weight": net.fc.weight.detach() + 0.01}
    assert s.values["train_loss"][1] == pytest.approx(by_hand(net, x, y, moved)[0], rel=1e-5)
    r = landscape.surface(problem, [1.0], progress=False)  # random directions live on the block only
    assert all(float(t.abs().sum()) == 0 for n, t in r.directions[0].items() if not n.startswith("fc."))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_model_analysed_on_the_gpu_comes_back_to_the_cpu_unchanged(net, digits):
    x, y = digits
    before = state_of(net)
    problem = landscape.Problem(net, DataLoader(TensorDataset(x, y), batch_size=100), device="cuda")
    assert problem.splits["train"].cached[0][0][0].is_cuda  # the data lives on the GPU after one pass
    landscape.surface(problem, "-1:1:3", bn="recompute", progress=False)  # changes BatchNorm statistics on the GPU
    s = landscape.surface(problem, "-1:1:3", progress=False)
    h = landscape.hessian(problem, top_k=1, progress=False)
    after = state_of(net)
    assert after[3].type == "cpu" and after[1:] == before[1:]
    assert all(torch.equal(before[0][k], v) for k, v in after[0].items())
    on_cpu = landscape.Problem(net, (x, y), batch_size=100)
    assert s.values["train_loss"][1] == pytest.approx(on_cpu.evaluate("train")["loss"], rel=1e-5)
    assert h.eigenvalues[0] == pytest.approx(
        landscape.hessian(on_cpu, top_k=1, progress=False).eigenvalues[0], rel=1e-3
    )
