"""Model registry (published parameter counts), metrics against hand computations, schedules."""

import math

import numpy as np
import pytest
import torch

from landscape.trainers import MODELS, classification_metrics, create_model, expected_calibration_error
from landscape.trainers.schedules import lr_factor


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_published_parameter_counts():
    # CIFAR ResNet18 (kuangliu/pytorch-cifar): 11,173,962; WRN-28-10 (Zagoruyko & Komodakis): 36.5M
    assert n_params(create_model("resnet18", 10, 3)) == 11_173_962
    assert n_params(create_model("wrn28_10", 10, 3)) == 36_479_194
    # kuangliu VGG16 (BN, one 512->10 layer): 14,728,266; ours has the AMP code's 512-4096-4096-10 classifier
    assert (
        n_params(create_model("vgg16", 10, 3))
        == 14_728_266 - 5130 + 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    )


@pytest.mark.parametrize(
    "name,kw,size,channels",
    [
        ("mlp", {"image_size": 8}, 8, 1),
        ("small_cnn", {}, 8, 1),
        ("resnet18", {"width": 8}, 8, 1),
        ("preactresnet18", {"width": 8}, 32, 3),
        ("vgg16", {"width": 8, "classifier_width": 32}, 32, 3),
        ("wrn28_10", {"depth": 10, "widen": 1}, 32, 3),
    ],
)
def test_every_model_classifies(name, kw, size, channels):
    model = create_model(name, num_classes=7, in_channels=channels, **kw)
    out = model(torch.randn(4, channels, size, size))
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    assert set(MODELS) == {"mlp", "small_cnn", "resnet18", "preactresnet18", "vgg16", "wrn28_10"}


def test_model_errors_are_clear():
    with pytest.raises(ValueError, match="unknown model 'resnet19'; choose from"):
        create_model("resnet19", 10, 3)
    with pytest.raises(ValueError, match="bad arguments"):
        create_model("small_cnn", 10, 3, depth=4)
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn28_10", 10, 3, depth=27)


def test_ece_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45], [0.05, 0.95]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0, 1])
    # 15 bins of width 1/15: conf 0.9 -> bin 13, 0.8 -> 11, 0.7 -> 10, 0.55 -> 8, 0.95 -> 14; one sample each
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55) + abs(1 - 0.95)) / 5
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    # two samples sharing a bin: |acc - conf| of the bin, weighted by 2/2
    two = torch.tensor([[0.9, 0.1], [0.88, 0.12]], dtype=torch.float64)
    assert expected_calibration_error(two, torch.tensor([0, 1])) == pytest.approx(abs(0.5 - 0.89))
    # confidence exactly on an edge (k/15) belongs to the lower bin (k-1): (a, b] bins
    edge = torch.tensor([[2 / 3, 1 / 3]], dtype=torch.float64)
    assert expected_calibration_error(edge, torch.tensor([0]), bins=3) == pytest.approx(1 / 3)


def test_reliability_bins_by_hand():
    from landscape.trainers.metrics import reliability

    probs = torch.tensor([[0.9, 0.1], [0.88, 0.12], [0.3, 0.7], [0.2, 0.8]], dtype=torch.float64)
    rel = reliability(probs, torch.tensor([0, 1, 1, 1]), bins=5)  # bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]
    np.testing.assert_array_equal(rel["count"], [0, 0, 0, 2, 2])
    np.testing.assert_allclose(rel["accuracy"][3:], [1.0, 0.5])
    np.testing.assert_allclose(rel["confidence"][3:], [0.75, 0.89])
    np.testing.assert_allclose(rel["correct"], [0, 0, 0, 2, 1])
    np.testing.assert_allclose(rel["confidence_sum"], [0, 0, 0, 1.5, 1.78])
    assert np.isnan(rel["accuracy"][:3]).all() and rel["edges"].tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1])


def test_classification_metrics_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    m = classification_metrics(logits, labels)
    nll = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1)) + math.log(1 + math.exp(-3))) / 3
    assert m["error"] == pytest.approx(100 / 3) and m["nll"] == pytest.approx(nll)


def test_schedules():
    assert [lr_factor("step", e, 200) for e in (0, 99, 100, 149, 150, 199)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert lr_factor("cosine", 0, 10) == 1 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert [lr_factor("hold-linear", e, 100) for e in (0, 50, 70, 90, 99)] == pytest.approx([1, 1, 0.505, 0.01, 0.01])
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0, 1)


@pytest.mark.parametrize("junk", [b"junk\n", bytes(range(256)) * 4])
def test_junk_is_not_a_checkpoint(tmp_path, junk):
    from landscape.trainers import read_checkpoint

    path = tmp_path / "x.pt"
    path.write_bytes(junk)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(path)
