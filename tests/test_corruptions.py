"""Corruptions and robustness: severity ordering, determinism, the released -C layouts, CE/mCE and pooled ECE
by hand, and the robustness file against a by-hand evaluation."""

import h5py
import numpy as np
import pytest
import torch

from landscape.data import load_dataset
from landscape.data.corruptions import (
    ALL,
    COMMON,
    CorruptHalf,
    corrupt_images,
    corrupted_split,
    parse_corruptions,
    parse_severities,
)
from landscape.data.formats import read_released_c
from landscape.io.robustness import read_robustness
from landscape.robustness import corruption_error, mean_corruption_error
from landscape.trainers.metrics import ece_from_sums, expected_calibration_error, reliability

# corruptions whose mean pixel change grows strictly with severity on these images (seed 0); snow, frost, fog,
# glass_blur, spatter and saturate are not monotone in that measure (random layers, grey input)
MONOTONE = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
)


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits32").test_x[:6]


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_orders_corruption_strength(images, name):
    change = [float((corrupt_images(images, name, s).float() - images.float()).abs().mean()) for s in range(1, 6)]
    assert all(a < b for a, b in zip(change, change[1:])), change


def test_every_corruption_is_deterministic_per_seed(images):
    for name in ALL:
        a = corrupt_images(images[:2], name, 3, seed=7)
        assert a.dtype == torch.uint8 and a.shape == images[:2].shape
        assert torch.equal(a, corrupt_images(images[:2], name, 3, seed=7)), name
    noisy = corrupt_images(images, "gaussian_noise", 3, seed=7)
    assert not torch.equal(noisy, corrupt_images(images, "gaussian_noise", 3, seed=8))
    # an image's corruption depends on its index in the split, not on the batch it came in
    idx = torch.tensor([1, 4])
    assert torch.equal(corrupt_images(images[idx], "gaussian_noise", 3, seed=7, indices=idx), noisy[idx])


def test_small_images_are_corrupted_through_32px(images):
    small = load_dataset("digits").test_x[:4]  # 1x8x8
    out = corrupt_images(small, "gaussian_noise", 5)
    assert out.shape == small.shape and (out.float() - small.float()).abs().mean() > 5


def test_cache_returns_the_stored_split(images, tmp_path, monkeypatch):
    first = corrupted_split(images, "digits32/test-6", "fog", 2, cache=tmp_path)
    assert (tmp_path / "digits32/test-6/fog_s2_seed0.npy").is_file()
    monkeypatch.setattr(
        "landscape.data.corruptions.corrupt_images", lambda *a, **k: pytest.fail("recomputed a cached split")
    )
    assert torch.equal(corrupted_split(images, "digits32/test-6", "fog", 2, cache=tmp_path), first)


def test_parsing_names_and_severities():
    assert parse_corruptions("all") == list(ALL) and len(ALL) == 19 and parse_corruptions("common") == list(COMMON)
    assert parse_corruptions("fog,extra") == ["fog", "speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert parse_severities("1-3,5") == [1, 2, 3, 5] and parse_severities("4") == [4]
    for bad, fn in (("fogg", parse_corruptions), ("0-2", parse_severities), ("x", parse_severities)):
        with pytest.raises(ValueError):
            fn(bad)


def test_cifar10_c_reader_on_the_released_layout(tmp_path):
    n = 4
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    # pixel value = 10 * severity + image index, so every row tells where it came from
    data = np.zeros((5 * n, 32, 32, 3), np.uint8)
    for s in range(5):
        for i in range(n):
            data[s * n + i] = 10 * (s + 1) + i
    data[:, 0, 0, 2] = 200  # one marked pixel: channel order survives the NHWC -> NCHW transpose
    np.save(folder / "fog.npy", data)
    np.save(folder / "labels.npy", np.tile(np.arange(n, dtype=np.uint8), 5))
    x, y = read_released_c(tmp_path, "cifar10", "fog", 3)
    assert x.shape == (n, 3, 32, 32) and x.dtype == torch.uint8 and y.tolist() == list(range(n))
    assert x[:, 0, 5, 5].tolist() == [30, 31, 32, 33] and x[0, 2, 0, 0] == 200 and x[0, 1, 0, 0] == 30
    with pytest.raises(FileNotFoundError, match="CIFAR-10-C"):
        read_released_c(tmp_path, "cifar10", "snow", 1)


def test_tiny_imagenet_c_reader(tmp_path):
    from PIL import Image

    for k, wnid in enumerate(("n01443537", "n01629819")):
        d = tmp_path / "Tiny-ImageNet-C" / "fog" / "2" / wnid
        d.mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((64, 64, 3), 40 * k + 10 * j, np.uint8)).save(d / f"img_{j}.JPEG")
    x, y = read_released_c(tmp_path, "tinyimagenet", "fog", 2)
    assert x.shape == (4, 3, 64, 64) and y.tolist() == [0, 0, 1, 1]
    assert abs(int(x[3].float().mean()) - 50) <= 2


def test_ce_and_mce_by_hand():
    errors = np.array([[10.0, 20.0, 30.0], [5.0, 5.0, 10.0], [40.0, 40.0, 40.0]])
    base = np.array([[20.0, 20.0, 20.0], [10.0, 10.0, 20.0], [30.0, 30.0, 60.0]])
    ce = corruption_error(errors, base)
    np.testing.assert_allclose(ce, [60 / 60, 20 / 40, 120 / 120])
    # mCE averages the common corruptions only: speckle_noise is one of the 4 extra ones
    assert mean_corruption_error(ce, ["fog", "speckle_noise", "snow"]) == pytest.approx((1.0 + 1.0) / 2)
    assert mean_corruption_error(ce, ["speckle_noise", "saturate", "spatter"]) == pytest.approx(np.mean(ce))


def test_pooled_ece_equals_the_ece_of_the_union():
    gen = torch.Generator().manual_seed(0)
    sets = [
        (
            torch.softmax(3 * torch.randn(50, 4, generator=gen, dtype=torch.float64), 1),
            torch.randint(4, (50,), generator=gen),
        )
        for _ in range(3)
    ]
    bins = [reliability(p, y) for p, y in sets]
    stacked = [
        np.stack([b["count"] for b in bins]),
        np.stack([b["correct"] for b in bins]),
        np.stack([b["confidence_sum"] for b in bins]),
    ]
    union = expected_calibration_error(torch.cat([p for p, _ in sets]), torch.cat([y for _, y in sets]))
    assert ece_from_sums(*stacked) == pytest.approx(union, rel=1e-12)
    assert ece_from_sums(*stacked) != pytest.approx(np.mean([expected_calibration_error(p, y) for p, y in sets]))


def test_robustness_file_matches_a_hand_evaluation(runs, tmp_path, monkeypatch):
    from landscape._evaluation import normalize, subset
    from landscape.apps.cli.__main__ import main
    from landscape.trainers import classification_metrics, load_checkpoint

    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rob.h5"
    args = [
        "robustness",
        str(runs / "sam" / "final.pt"),
        "--baseline",
        str(runs / "erm" / "final.pt"),
        "--corruptions",
        "gaussian_noise,contrast",
        "--severities",
        "1,4",
        "--samples",
        "120",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(args + ["--no-progress"]) == 0
    r = read_robustness(out)
    assert (
        r.corruptions == ["gaussian_noise", "contrast"] and r.severities == [1, 4] and r.models == ["model", "baseline"]
    )
    ds = load_dataset("digits")
    idx = subset(len(ds.test_y), 120, 0)
    for model_name, ckpt in (("model", "sam"), ("baseline", "erm")):
        model, meta = load_checkpoint(runs / ckpt / "final.pt")
        model.eval()
        for c, corruption in enumerate(r.corruptions):
            for s, severity in enumerate(r.severities):
                x = corrupt_images(ds.test_x[idx], corruption, severity, 0, indices=idx)
                with torch.no_grad():
                    m = classification_metrics(model(normalize(x, meta["dataset"])), ds.test_y[idx])
                assert r.table("error", model_name)[c, s] == pytest.approx(m["error"])
                assert r.table("ece", model_name)[c, s] == pytest.approx(m["ece"], abs=1e-9)
        with torch.no_grad():
            clean = classification_metrics(model(normalize(ds.test_x[idx], meta["dataset"])), ds.test_y[idx])
        assert r.clean("error", model_name) == pytest.approx(clean["error"])
    np.testing.assert_allclose(r.ce(), r.table().sum(1) / r.table(model="baseline").sum(1))
    assert r.mce() == pytest.approx(r.ce().mean()) and r.by_severity()[1] == pytest.approx(r.table()[:, 1].mean())

    # interrupted: forget two conditions, resume recomputes just those and ends identical
    with h5py.File(out, "r+") as f:
        f["computed"][:, 3:] = 0
        f["error"][:, 3:] = -1
    assert main(args + ["--resume", "--no-progress"]) == 0
    np.testing.assert_array_equal(read_robustness(out).values["error"], r.values["error"])
    assert main(args) == 2  # exists: needs --resume or --overwrite


def test_corrupt_half_corrupts_exactly_half_reproducibly():
    x = load_dataset("digits32").train_x[:10]
    aug = CorruptHalf("gaussian_noise", [5])
    a = aug(x, torch.Generator().manual_seed(3))
    changed = (a != x).flatten(1).any(1)
    assert int(changed.sum()) == 5
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="unknown corruption"):
        CorruptHalf("fogg", [1])


def test_train_with_a_corruption_augmentation(tmp_path):
    from landscape.trainers import read_checkpoint
    from landscape.trainers.train import TrainConfig, train

    cfg = TrainConfig(epochs=2, augment_corruption="contrast", augment_severity="2-3", seed=0)
    last = train(cfg, tmp_path / "run", progress=False, log=lambda line: None)
    assert last["test_error"] < 50
    assert read_checkpoint(tmp_path / "run" / "final.pt")["config"]["augment_corruption"] == "contrast"
    with pytest.raises(ValueError, match="augment_severity= needs augment_corruption="):
        TrainConfig(augment_severity="3").validate()


def test_a_checkpoint_against_itself_is_evaluated_once(runs, tmp_path, monkeypatch):
    import landscape.robustness as numerics
    from landscape._jobs import EvalOptions, robustness_analysis

    calls = []
    real = numerics.predict
    monkeypatch.setattr(numerics, "predict", lambda net, data: calls.append(1) or real(net, data))
    ckpt = runs / "erm" / "final.pt"
    out = robustness_analysis(
        ckpt,
        tmp_path / "self.h5",
        ["contrast"],
        [2],
        EvalOptions(samples=60, device="cpu", progress=False),
        baseline=ckpt,
    )
    r = read_robustness(out)
    assert len(calls) == 2  # clean and contrast-2, one model each
    assert r.models == ["model", "baseline"] and r.mce() == 1.0 and r.relative_clean_error() == 1.0
    np.testing.assert_array_equal(r.values["error"][0], r.values["error"][1])


def test_an_unwritable_cache_costs_time_not_the_result(images, tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="corruptions not cached"):
        out = corrupted_split(images, "digits32/test-6", "fog", 2, cache=blocked)
    assert torch.equal(out, corrupt_images(images, "fog", 2))
