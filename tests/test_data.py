"""Datasets and the tensor loader, against files and arrays the tests write themselves."""

import gzip
import pickle

import numpy as np
import pytest
import scipy.io
import torch

from landscape.data import Augment, TensorLoader, load_dataset
from landscape.data.loader import random_crop, random_hflip


def test_digits_split_is_fixed_stratified_and_real():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train_x.shape == (1437, 1, 8, 8) and a.test_x.shape == (360, 1, 8, 8)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.train_x.dtype == torch.uint8 and int(a.train_x.max()) == 255
    assert torch.bincount(a.test_y).min() >= 35  # stratified: every class ~36 times
    from sklearn.datasets import load_digits

    raw = load_digits()
    first = np.rint(raw.images * 255 / 16).astype(np.uint8)
    # every test image is one of sklearn's images, with its label
    idx = [int(np.flatnonzero((first == img[0]).all(axis=(1, 2)))[0]) for img in a.test_x[:20].numpy()]
    assert list(raw.target[idx]) == a.test_y[:20].tolist()


def test_digits32_is_the_same_split_upsampled_to_rgb():
    d8, d32 = load_dataset("digits"), load_dataset("digits32")
    assert d32.train_x.shape == (1437, 3, 32, 32) and torch.equal(d8.train_y, d32.train_y)
    assert torch.equal(d32.train_x[:, 0], d32.train_x[:, 2])
    down = torch.nn.functional.avg_pool2d(d32.train_x[:, :1].float(), 4).flatten()
    assert torch.corrcoef(torch.stack([down, d8.train_x.float().flatten()]))[0, 1] > 0.95  # the same digits, resampled


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_family_idx(tmp_path, name, folder, gz):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 5),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3),
    }
    for stem, arr in arrays.items():
        write_idx(raw / (stem + (".gz" if gz else "")), arr, gz)
    ds = load_dataset(name, tmp_path)
    assert ds.train_x.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_truncated_idx_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((5, 28, 28)))
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", tmp_path)


def cifar_batch(rng, n, label_key):
    return {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), label_key.encode(): list(rng.integers(0, 10, n))}


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": cifar_batch(rng, 2, "labels") for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, 3, "labels")
    for name, entry in batches.items():
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_x[2].numpy().reshape(-1), batches["data_batch_2"][b"data"][0])
    # channel-major rows: the first 1024 values are the red plane
    np.testing.assert_array_equal(ds.test_x[1, 0].numpy().reshape(-1), batches["test_batch"][b"data"][1][:1024])
    assert ds.test_y.tolist() == batches["test_batch"][b"labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        entry = cifar_batch(rng, 4, "fine_labels")
        entry[b"coarse_labels"] = [0] * 4
        (folder / name).write_bytes(pickle.dumps(entry))
    ds = load_dataset("cifar100", tmp_path)
    assert (
        ds.num_classes == 100 and ds.train_y.tolist() == pickle.loads((folder / "train").read_bytes())[b"fine_labels"]
    )


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({"data": Evil(), "fine_labels": []}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_dataset("cifar100", tmp_path)


def test_svhn_mat(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 4)).astype(np.uint8)
    y = np.array([[10], [1], [5], [10]])
    for split in ("train", "test"):
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", tmp_path)
    assert ds.train_y.tolist() == [0, 1, 5, 0]
    np.testing.assert_array_equal(ds.train_x[1].numpy(), x[:, :, :, 1].transpose(2, 0, 1))


def test_missing_files_and_roots_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="pass data_root="):
        load_dataset("svhn")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; choose from"):
        load_dataset("cifar11")


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        hits = [(r, c) for r in range(5) for c in range(5) if torch.equal(out[i], padded[i, :, r : r + 8, c : c + 8])]
        assert hits, f"image {i} is not a crop"
        offsets.add(hits[0])
    assert len(offsets) > 3  # offsets really vary per image


def test_random_hflip_flips_about_half():
    x = torch.arange(2000 * 4, dtype=torch.float32).view(2000, 1, 1, 4)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] == x[:, 0, 0, 3]
    assert torch.equal(out[flipped], x[flipped].flip(3)) and torch.equal(out[~flipped], x[~flipped])
    assert 900 < flipped.sum() < 1100


def make_loader(seed=0, **kw):
    ds = load_dataset("digits32")
    return TensorLoader(
        ds.train_x,
        ds.train_y,
        mean=ds.mean,
        std=ds.std,
        batch_size=100,
        shuffle=True,
        seed=seed,
        augment=Augment(4, True),
        **kw,
    )


def test_loader_is_seeded_and_resumable():
    a, b = make_loader(), make_loader()
    first = [y for _, y in a]
    assert all(torch.equal(p, q) for p, q in zip(first, [y for _, y in b]))
    state = a.state_dict()
    epoch2 = [x for x, _ in a]
    c = make_loader(seed=123)
    c.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(epoch2, [x for x, _ in c]))
    assert not torch.equal(first[0], [y for _, y in make_loader(seed=1)][0])


def test_loader_batches_cover_the_split_and_normalize():
    ds = load_dataset("digits")
    loader = TensorLoader(
        ds.train_x, ds.train_y, mean=ds.mean, std=ds.std, batch_size=100, shuffle=True, drop_last=True
    )
    assert len(loader) == 14 and sum(len(y) for _, y in loader) == 1400
    full = TensorLoader(ds.train_x, ds.train_y, mean=ds.mean, std=ds.std, batch_size=100)
    assert len(full) == 15
    x = torch.cat([x for x, _ in full])
    assert torch.equal(torch.cat([y for _, y in full]), ds.train_y)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_channel_statistics_match_numpy():
    ds = load_dataset("digits32")
    x = ds.train_x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(ds.std, x.std(axis=(0, 2, 3), ddof=1), rtol=1e-8)
    assert ds.mean is ds.mean  # computed once
