"""Directions: filter normalization per filter, seeds, orthogonality, interpolation, PCA on a known plane."""

import pytest
import torch

from landscape.directions import (
    difference,
    dot,
    normalize_direction,
    pca_directions,
    random_direction,
    random_directions,
    target_tensors,
)
from landscape.trainers import create_model


@pytest.fixture
def weights():
    torch.manual_seed(0)
    return target_tensors(create_model("small_cnn", 10, 1))


def test_filter_normalization_matches_each_filter(weights):
    d = normalize_direction(random_direction(weights, torch.Generator().manual_seed(0)), weights, "filter", "biasbn")
    for name, w in weights.items():
        if w.dim() > 1:
            for k in range(w.shape[0]):  # every output channel / output neuron
                assert d[name][k].norm().item() == pytest.approx(w[k].norm().item(), rel=1e-5), (name, k)
        else:
            assert torch.count_nonzero(d[name]) == 0, name  # biases and BN zeroed
    kept = normalize_direction(random_direction(weights, torch.Generator().manual_seed(0)), weights, "filter", "none")
    assert all(torch.equal(kept[n], w) for n, w in weights.items() if w.dim() <= 1)  # loss-landscape: d = w


def test_layer_and_model_normalization(weights):
    raw = random_direction(weights, torch.Generator().manual_seed(1))
    layer = normalize_direction(raw, weights, "layer")
    for n, w in weights.items():
        if w.dim() > 1:
            assert layer[n].norm().item() == pytest.approx(w.norm().item(), rel=1e-5)
    model = normalize_direction(raw, weights, "model")
    moved = [n for n, w in weights.items() if w.dim() > 1]
    total_d = sum(model[n].double().pow(2).sum() for n in moved).sqrt()
    total_w = sum(weights[n].double().pow(2).sum() for n in moved).sqrt()
    assert total_d.item() == pytest.approx(total_w.item(), rel=1e-6)
    assert torch.equal(normalize_direction(raw, weights, "none")["0.weight"], raw["0.weight"])
    with pytest.raises(ValueError, match="unknown normalization 'dfilter'"):
        normalize_direction(raw, weights, "dfilter")


def test_seeds_are_explicit(weights):
    a = random_directions(weights, count=2, seed=3)
    b = random_directions(weights, count=2, seed=3)
    c = random_directions(weights, count=2, seed=4)
    assert torch.equal(a[1]["0.weight"], b[1]["0.weight"]) and not torch.equal(a[0]["0.weight"], c[0]["0.weight"])
    assert not torch.equal(a[0]["0.weight"], a[1]["0.weight"])


def test_orthogonal_second_direction(weights):
    d1, d2 = random_directions(weights, count=2, seed=0, orthogonal=True)
    assert abs(dot(d1, d2).item()) < 1e-9 * dot(d1, d1).item()


def test_difference_checks_architecture(weights):
    other = target_tensors(create_model("small_cnn", 10, 1, width=8))
    with pytest.raises(ValueError, match="differ in shape at 0.weight"):
        difference(weights, other)
    with pytest.raises(ValueError, match="not the same architecture"):
        difference(weights, target_tensors(create_model("mlp", 10, 1)))
    d = difference(weights, {n: w + 1 for n, w in weights.items()})
    assert all(torch.allclose(v, torch.ones_like(v)) for v in d.values())


def test_pca_recovers_a_known_plane():
    g = torch.Generator().manual_seed(0)
    final = {
        "a.weight": torch.randn(6, 5, generator=g, dtype=torch.float64),
        "a.bias": torch.randn(6, generator=g, dtype=torch.float64),
    }
    u, v = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    u, v = u / u.norm(), v - (v @ u) * u
    v = v / v.norm()
    ab = torch.randn(8, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    traj = [
        {"a.weight": final["a.weight"] + (a * u + b * v).view(6, 5), "a.bias": final["a.bias"] + 1.0} for a, b in ab
    ]
    (d1, d2), ratio, coords = pca_directions(traj, final, ignore="biasbn")
    basis = torch.stack([d1["a.weight"].flatten(), d2["a.weight"].flatten()])
    assert torch.allclose(basis @ basis.T, torch.eye(2, dtype=torch.float64), atol=1e-10)  # orthonormal
    for w in (u, v):  # the plane is recovered
        assert (basis @ w).norm().item() == pytest.approx(1.0, abs=1e-10)
    assert ratio.sum().item() == pytest.approx(1.0) and ratio[0] >= ratio[1]
    rows = torch.stack([(t["a.weight"] - final["a.weight"]).flatten() for t in traj])
    assert torch.allclose(coords @ basis, rows, atol=1e-10)  # coordinates reproduce the path
    assert torch.count_nonzero(d1["a.bias"]) == 0  # biasbn ignored
