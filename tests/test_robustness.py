"""landscape.corruption_robustness: a user's classifier under corruptions, checked against predictions made by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import landscape
from landscape.data import load_dataset
from landscape.data.corruptions import corrupt_images
from landscape.robustness import corruption_error, mean_corruption_error

CORRUPTIONS, SEVERITIES = ["gaussian_noise", "contrast"], [1, 3]


class RawNet(nn.Module):
    """Takes raw images (uint8 or [0, 1] floats) and normalizes inside, as RobustBench's models do."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 15 * 15, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        return self.head(self.net((x - 0.5) / 0.25))


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset("digits32").split("test")
    return x[:48], y[:48]


def by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(error %, NLL) of ``model`` on raw images, computed directly."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return float((logits.argmax(1) != y).float().mean() * 100), float(F.cross_entropy(logits.double(), y))


def test_every_condition_matches_predictions_made_by_hand(images):
    x, y = images
    model, base = RawNet(0), RawNet(1)
    r = landscape.corruption_robustness(
        landscape.Problem(model, {"test": (x, y)}), corruptions=CORRUPTIONS, severities=SEVERITIES, baseline=base,
        progress=False,
    )  # fmt: skip
    assert r.models == ["model", "baseline"] and r.corruptions == CORRUPTIONS and r.severities == SEVERITIES
    for m, net in (("model", model), ("baseline", base)):
        err, nll = by_hand(net, x, y)
        assert r.clean("error", m) == pytest.approx(err) and r.clean("nll", m) == pytest.approx(nll, rel=1e-5)
        for i, c in enumerate(CORRUPTIONS):
            for j, s in enumerate(SEVERITIES):
                err, nll = by_hand(net, corrupt_images(x, c, s, 0), y)
                assert r.table("error", m)[i, j] == pytest.approx(err)
                assert r.table("nll", m)[i, j] == pytest.approx(nll, rel=1e-5)
    ce = corruption_error(r.table("error"), r.table("error", "baseline"))
    np.testing.assert_allclose(r.ce(), ce)
    assert r.mce() == pytest.approx(mean_corruption_error(ce, CORRUPTIONS))


def test_float_images_in_unit_range_give_the_uint8_numbers(images):
    x, y = images
    model = RawNet(0)
    kw = dict(corruptions=CORRUPTIONS[:1], severities=[2], progress=False)
    as_bytes = landscape.corruption_robustness(landscape.Problem(model, {"test": (x, y)}), **kw)
    as_floats = landscape.corruption_robustness(landscape.Problem(model, {"test": (x.float() / 255, y)}), **kw)
    np.testing.assert_allclose(as_floats.values["error"], as_bytes.values["error"])
    np.testing.assert_allclose(as_floats.values["nll"], as_bytes.values["nll"], rtol=1e-5)


def test_the_file_reads_back_resumes_and_leaves_the_baseline_as_it_was(images, tmp_path):
    x, y = images
    model, base = RawNet(0), RawNet(1)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    problem = landscape.Problem(model, {"test": (x, y)})
    kw = dict(corruptions=CORRUPTIONS, severities=[1], baseline=base, progress=False)
    mem = landscape.corruption_robustness(problem, **kw)
    out = tmp_path / "robustness.h5"
    written = landscape.corruption_robustness(problem, out=out, **kw)
    assert landscape.read(out).models == ["model", "baseline"]
    for name in ("error", "nll", "ece", "bin_count"):
        np.testing.assert_allclose(written.values[name], mem.values[name], rtol=1e-6)
    with pytest.raises(ValueError, match="resume=True"):
        landscape.corruption_robustness(problem, out=out, **kw)
    lines: list[str] = []
    again = landscape.corruption_robustness(problem, out=out, resume=True, log=lines.append, **kw)
    assert any("6 of 6 points already computed" in s for s in lines)
    np.testing.assert_allclose(again.values["error"], written.values["error"])
    with pytest.raises(ValueError, match="severities"):
        landscape.corruption_robustness(problem, out=out, resume=True, **{**kw, "severities": [2]})
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items()) and base.training


@pytest.mark.parametrize(
    "data, model, message",
    [
        ("normalized", RawNet(0), "uint8 \\(0-255\\) or float in \\[0, 1\\]"),
        ("raw", nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1), nn.Flatten(0)), "needs a classifier"),
        ("flat", nn.Sequential(nn.Linear(8, 10)), "images of shape"),
    ],
)
def test_what_it_cannot_corrupt_or_score_is_refused_in_one_line(images, data, model, message):
    x, y = images
    inputs = {"normalized": (x.float() - 128) / 64, "raw": x.float() / 255, "flat": torch.rand(48, 8)}[data]
    loss = nn.CrossEntropyLoss() if data != "raw" else (lambda out, t: (out - t.float()).pow(2).mean())
    problem = landscape.Problem(model, {"test": (inputs, y)}, loss)
    with pytest.raises(ValueError, match=message) as e:
        landscape.corruption_robustness(problem, corruptions=CORRUPTIONS[:1], severities=[1], progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown corruption"):
        landscape.corruption_robustness(problem, corruptions=["fog_of_war"])
