"""Datasets on real data (MNIST IDX files, CIFAR-10 batches), validation errors, batch plans."""
import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from experiments.data import cifar10, download
from experiments.data import mnist as mnist_files
from experiments.data import loading as data
from experiments.results.faults import StorageError
from experiments.data import DataError, epoch_batches, flip_images, load_dataset

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
MNIST = REAL / "mnist"
needs_real = pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"real data not found in {REAL}")

# Class counts of the 60,000 official MNIST training labels.
MNIST_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def raw_idx(name):
    return gzip.decompress((MNIST / (name + ".gz")).read_bytes())


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", REAL, download=False)


@pytest.fixture(scope="module")
def cifar(cifar_root):
    return load_dataset("cifar10", cifar_root, download=False)


def read_batch(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


# -- MNIST ----------------------------------------------------------------------------

@needs_real
def test_mnist_shapes_and_types(mnist):
    assert mnist.name == "mnist" and mnist.flip is False
    assert mnist.x_train.shape == (50000, 1, 28, 28) and mnist.x_val.shape == (10000, 1, 28, 28)
    assert mnist.x_train.dtype == mnist.x_val.dtype == np.float32
    assert mnist.y_train.shape == (50000,) and mnist.y_val.shape == (10000,)
    assert mnist.y_train.dtype == mnist.y_val.dtype == np.int32


@needs_real
def test_mnist_preprocessing_matches_raw_bytes(mnist):
    pixels = np.frombuffer(raw_idx("train-images-idx3-ubyte"), np.uint8, offset=16)
    x = pixels.reshape(60000, 1, 28, 28) / np.float32(256)  # divided by 256, not 255
    mean = x[:50000].mean(axis=0, dtype=np.float64).astype(np.float32)
    assert np.abs(mnist.x_train - (x[:50000] - mean)).max() < 1e-6
    # the LAST 10,000 training images are the validation set, shifted by the same mean
    assert np.abs(mnist.x_val - (x[50000:] - mean)).max() < 1e-6
    assert np.abs(mnist.x_train.mean(axis=0, dtype=np.float64)).max() < 1e-6
    assert mnist.x_val.mean() != pytest.approx(0, abs=1e-4)  # not centred separately


@needs_real
def test_mnist_labels(mnist):
    labels = np.frombuffer(raw_idx("train-labels-idx1-ubyte"), np.uint8, offset=8)
    np.testing.assert_array_equal(mnist.y_val, labels[50000:])
    np.testing.assert_array_equal(mnist.y_train, labels[:50000])
    counts = np.bincount(mnist.y_train, minlength=10) + np.bincount(mnist.y_val, minlength=10)
    assert counts.tolist() == MNIST_COUNTS


@needs_real
def test_mnist_uncompressed_files_in_data_dir(tmp_path, mnist):
    # uncompressed IDX files directly in the data directory (no mnist/ subfolder)
    for name in mnist_files.MNIST_MD5:
        (tmp_path / name).write_bytes(raw_idx(name))
    d = load_dataset("mnist", tmp_path, download=False)
    np.testing.assert_array_equal(d.x_val, mnist.x_val)
    np.testing.assert_array_equal(d.y_train, mnist.y_train)


def test_missing_without_download_names_file_and_option(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "--data-dir" in msg
    assert "AMSGRAD_DATA_DIR" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="cifar-10-batches-py.*--data-dir"):
        load_dataset("cifar10", tmp_path, download=False)


def test_unknown_dataset_and_file_as_data_dir(tmp_path):
    with pytest.raises(DataError, match="'svhn'"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError) as info:
        load_dataset("mnist", tmp_path / "f")
    assert str(info.value) == (f"{tmp_path}/f is a file, not a folder; choose another folder "
                               f"with --data-dir (or AMSGRAD_DATA_DIR)")


def idx_bytes(magic_ndim, dims, payload):
    header = bytes([0, 0, 8, magic_ndim]) + np.asarray(dims, ">u4").tobytes()
    return header + bytes(payload)


@needs_real
@pytest.mark.parametrize("labels, problem", [
    (idx_bytes(1, [60000], np.zeros(59990, np.uint8)), r"is truncated: 59998 bytes, expected 60008"),
    (idx_bytes(3, [60000], np.zeros(60000, np.uint8)), r"magic number 00000803, expected 00000801"),
    (idx_bytes(1, [59999], np.zeros(59999, np.uint8)), r"shape \(59999,\), expected \(60000,\)"),
    (idx_bytes(1, [60000], bytes(123) + b"\x0a" + bytes(59876)),
     r"label 10 at index 123 is outside 0..9"),
    (b"\x1f\x8b garbage", r"cannot read .*: Unknown compression method"),
], ids=["truncated", "magic", "count", "label", "gzip"])
def test_bad_mnist_labels_file(tmp_path, labels, problem):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").symlink_to(
        MNIST / "train-images-idx3-ubyte.gz")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        labels if labels.startswith(b"\x1f\x8b") else gzip.compress(labels, 1))
    with pytest.raises(DataError, match=problem) as e:
        load_dataset("mnist", tmp_path, download=False)
    assert "train-labels-idx1-ubyte.gz" in str(e.value)


def test_truncated_mnist_images_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(3, [60000, 28, 28], b"\0" * 99))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated: 115 bytes"):
        load_dataset("mnist", tmp_path, download=False)


# -- CIFAR-10 -------------------------------------------------------------------------

@needs_real
def test_cifar10_matches_batches(cifar, cifar_root):
    assert cifar.name == "cifar10" and cifar.flip is True
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_val.shape == (10000, 3, 32, 32)
    assert cifar.x_train.dtype == cifar.x_val.dtype == np.float32
    assert cifar.y_train.dtype == cifar.y_val.dtype == np.int32
    folder = cifar_root / "cifar-10-batches-py"
    test = read_batch(folder / "test_batch")
    # the official test set is the validation set: pixels / 255, no mean subtraction
    expected = test[b"data"].reshape(10000, 3, 32, 32).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(cifar.x_val, expected)
    np.testing.assert_array_equal(cifar.y_val, test[b"labels"])
    batch3 = read_batch(folder / "data_batch_3")
    np.testing.assert_array_equal(cifar.y_train[20000:30000], batch3[b"labels"])
    assert cifar.x_train[20000, 2, 5, 7] == np.float32(batch3[b"data"][0, 2 * 1024 + 5 * 32 + 7]) / np.float32(255)
    assert cifar.x_train.min() == 0 and cifar.x_train.max() == 1
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_val).tolist() == [1000] * 10


@needs_real
def test_cifar10_data_dir_may_be_the_batches_folder(cifar, cifar_root):
    d = load_dataset("cifar10", cifar_root / "cifar-10-batches-py", download=False)
    np.testing.assert_array_equal(d.y_train, cifar.y_train)


@needs_real
def test_cifar10_from_local_archive(tmp_path, cifar_root, cifar, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    # uncompressed to keep the test fast ("r:*" reads both; gzip: see test_download.py)
    with tarfile.open(archive, "w") as tar:
        tar.add(cifar_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    # the official md5 does not fit a home-made archive: refused, nothing extracted
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: md5 .* is not the official"):
        load_dataset("cifar10", tmp_path, download=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", download.md5sum(archive))
    d = load_dataset("cifar10", tmp_path, download=False)
    np.testing.assert_array_equal(d.x_val, cifar.x_val)
    np.testing.assert_array_equal(d.y_train, cifar.y_train)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py",
                                                          "cifar-10-python.tar.gz"]


def fake_cifar_folder(tmp_path, cifar_root, name, batch, protocol=4):
    """A batches folder linking the real batches except ``name``, which holds ``batch``."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for other in cifar10.CIFAR10_BATCHES:
        if other != name:
            (folder / other).symlink_to(cifar_root / "cifar-10-batches-py" / other)
    (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


@needs_real
@pytest.mark.parametrize("batch, problem", [
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 10, 1]},
     "label 10 at index 1 is outside 0..9"),
    ({b"data": np.zeros((3, 3071), np.uint8), b"labels": [0, 1, 1]},
     r"b'data' is uint8 \(3, 3071\), expected uint8 \(n, 3072\)"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, "b'labels' has shape"),
    ({b"labels": [0]}, "is not a CIFAR-10 batch"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2, 3]},
     "holds 40003 training images, expected 50000"),
], ids=["label", "data", "labels", "keys", "count"])
def test_bad_cifar_batch(tmp_path, cifar_root, batch, problem):
    fake_cifar_folder(tmp_path, cifar_root, "data_batch_2", batch)
    with pytest.raises(DataError, match=problem) as e:
        load_dataset("cifar10", tmp_path, download=False)
    assert "cifar-10-batches-py" in str(e.value)


def test_truncated_cifar_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10})
    for name in cifar10.CIFAR10_BATCHES:
        (folder / name).write_bytes(batch[:-100] if name == "data_batch_1" else batch)
    with pytest.raises(DataError, match="cannot read CIFAR-10 batch .*data_batch_1: "):
        load_dataset("cifar10", tmp_path, download=False)


@needs_real
def test_cifar_batch_pickles_load_no_code(tmp_path, cifar_root, cifar):
    # a batch written under numpy 1 / Python 2 names numpy.core.multiarray
    test = read_batch(cifar_root / "cifar-10-batches-py" / "test_batch")
    old = pickle.dumps(test, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    folder = fake_cifar_folder(tmp_path, cifar_root, "test_batch", None)
    (folder / "test_batch").write_bytes(old)
    np.testing.assert_array_equal(load_dataset("cifar10", tmp_path, download=False).x_val,
                                  cifar.x_val)
    # ... but a pickle that would call a function is refused before running anything
    (folder / "test_batch").write_bytes(pickle.dumps(EvilBatch(tmp_path / "pwned")))
    with pytest.raises(DataError, match="test_batch: refusing to load .*open"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "pwned").exists()


class EvilBatch:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_incomplete_cifar_folder_is_not_overwritten(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"mine")
    with pytest.raises(DataError, match="data_batch_2 is missing"):
        load_dataset("cifar10", tmp_path)  # download allowed, but never over user files
    assert [p.name for p in folder.iterdir()] == ["data_batch_1"]


# -- data directory -------------------------------------------------------------------

def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AMSGRAD_DATA_DIR", raising=False)
    assert data.resolve_data_dir() == tmp_path / "home/.cache/amsgrad-experiments/data"
    monkeypatch.setenv("AMSGRAD_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir("~/x") == tmp_path / "home/x"


# -- batch plans ----------------------------------------------------------------------

def test_epoch_batches_cifar_size():
    indices, flips = epoch_batches(seed=3, epoch=7, n_train=50000)
    assert indices.shape == (391, 128) and indices.dtype == np.int32 and flips is None
    flat = indices.ravel()
    # a fresh permutation, then 391 * 128 - 50000 = 48 fill-ups drawn from all examples
    np.testing.assert_array_equal(np.sort(flat[:50000]), np.arange(50000))
    assert len(flat[50000:]) == 48 and flat[50000:].min() >= 0 and flat[50000:].max() < 50000
    # the generator and draw order are part of the contract (all engines share them)
    rng = np.random.default_rng([3, 1, 7])
    np.testing.assert_array_equal(flat[:50000], rng.permutation(50000))
    np.testing.assert_array_equal(flat[50000:], rng.integers(0, 50000, 48))


def test_epoch_batches_small_cases():
    indices, _ = epoch_batches(0, 0, n_train=5, batch_size=2)
    assert indices.shape == (3, 2)
    assert sorted(indices.ravel()[:5]) == [0, 1, 2, 3, 4] and 0 <= indices[2, 1] < 5
    indices, _ = epoch_batches(0, 0, n_train=256, batch_size=128)  # no fill-up needed
    assert indices.shape == (2, 128) and sorted(indices.ravel()) == list(range(256))
    indices, _ = epoch_batches(0, 0, n_train=3, batch_size=128)
    assert indices.shape == (1, 128) and set(indices.ravel()) == {0, 1, 2}
    for bad in (dict(n_train=0), dict(n_train=5, batch_size=0), dict(n_train=5, epoch=-1)):
        with pytest.raises(ValueError):
            epoch_batches(**{"seed": 0, "epoch": 0, **bad})


def test_epoch_batches_determinism():
    a, fa = epoch_batches(1, 2, 50000, flip=True)
    b, fb = epoch_batches(1, 2, 50000, flip=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(a, epoch_batches(1, 3, 50000)[0])
    assert not np.array_equal(a, epoch_batches(2, 2, 50000)[0])
    # flips are drawn last: augmentation does not change the example order
    np.testing.assert_array_equal(a, epoch_batches(1, 2, 50000, flip=False)[0])


def test_epoch_batches_flips():
    _, flips = epoch_batches(0, 0, 50000, flip=True)
    assert flips.shape == (391, 128) and flips.dtype == np.bool_
    assert 0.49 < flips.mean() < 0.51
    _, other = epoch_batches(0, 1, 50000, flip=True)
    assert 0.45 < (flips == other).mean() < 0.55  # fresh every epoch


def test_flip_images():
    x = np.arange(12, dtype=np.float32).reshape(2, 1, 2, 3)
    out = flip_images(x, np.array([True, False]))
    np.testing.assert_array_equal(out[0, 0], [[2, 1, 0], [5, 4, 3]])
    np.testing.assert_array_equal(out[1], x[1])
    assert x[0, 0, 0, 0] == 0  # input untouched
