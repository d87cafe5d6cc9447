"""MNIST and CIFAR-10 as the experiments use them, and each epoch's batch plan.

Preprocessing follows the original experiment code exactly:

- MNIST: pixels / 256, shape (N, 1, 28, 28); the last 10,000 training images are the
  validation set; the per-pixel mean of the remaining 50,000 is subtracted from both.
  The MNIST test set is not used.
- CIFAR-10: pixels / 255, shape (N, 3, 32, 32); the official test set is the
  validation set; training images are flipped left-right at random. The per-pixel
  training mean is subtracted as the setup says (``subtract_mean``: the published runs
  did, the original code's last commit does not, and neither did this suite before the
  key existed, so that is the default here).

Mean subtraction is one function for both (:func:`preprocess`): the per-pixel mean of
all training images in float64, cast to float32, subtracted from training and
validation images alike (before any ``train_subset`` is taken).

Layout of a data directory (``--data-dir``, else ``$AMSGRAD_DATA_DIR``, else
``~/.cache/amsgrad-experiments/data``)::

    <data_dir>/mnist/train-images-idx3-ubyte.gz     (or uncompressed, without .gz;
    <data_dir>/mnist/train-labels-idx1-ubyte.gz      the files may also sit in <data_dir>)
    <data_dir>/cifar-10-batches-py/data_batch_1..5, test_batch
    <data_dir>/cifar-10-python.tar.gz               (optional: extracted when the
                                                     folder above is missing)

Missing files are downloaded from the official sources and verified against the
official checksums before use (MNIST: md5 of the uncompressed IDX bytes, so any gzip
recompression is accepted). Mirrors can be changed with ``$AMSGRAD_MNIST_MIRRORS``
(base URLs separated by spaces or commas) and ``$AMSGRAD_CIFAR10_URL``.
"""
import copy
import dataclasses
import gzip
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from . import download as dl

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
#: md5 of the UNCOMPRESSED official IDX files (only the training files are used).
MNIST_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
             "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624"}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
#: md5 of the official archive; ``None`` skips the check (for a home-made archive).
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

DEFAULT_DATA_DIR = Path("~/.cache/amsgrad-experiments/data")
HINT = "point --data-dir (or AMSGRAD_DATA_DIR) at a directory holding local copies"


class DataError(Exception):
    """A user-facing data problem (missing file, failed checksum, bad file); one line."""


@dataclasses.dataclass(repr=False)
class Dataset:
    """Preprocessed arrays: float32 images (N, C, H, W), int32 labels."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    flip: bool = False  # default augmentation: random left-right flips
    mean_subtracted: bool = None  # None: arrays made by hand, taken as they are

    def __repr__(self):
        return (f"Dataset({self.name!r}, train {self.x_train.shape}, val {self.x_val.shape}, "
                f"flip={self.flip}, mean_subtracted={self.mean_subtracted})")


def resolve_data_dir(data_dir=None):
    """The data directory: ``data_dir``, else ``$AMSGRAD_DATA_DIR``, else the user cache."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get("AMSGRAD_DATA_DIR")
    return Path(chosen or DEFAULT_DATA_DIR).expanduser()


def load_dataset(name, data_dir=None, download=True, quiet=False, subtract_mean=None):
    """Load 'mnist' or 'cifar10', preprocessed as in the original experiments.

    Parameters
    ----------
    name : {'mnist', 'cifar10'}
    data_dir : path, optional
        See :func:`resolve_data_dir` and the module docstring for the layout.
    download : bool
        Fetch missing files from the official sources (verified); if False, a
        missing file is a :class:`DataError` without touching the network.
    quiet : bool
        No download progress bar.
    subtract_mean : bool, optional
        Subtract the training mean (:func:`preprocess`); default: MNIST yes, CIFAR-10
        no (:data:`experiments.setup_keys.LEGACY_SUBTRACT_MEAN`).

    Raises
    ------
    DataError
        Missing and not downloadable, failed checksum, or a malformed file.
    """
    loaders = {"mnist": _load_mnist, "cifar10": _load_cifar10}
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(loaders)}")
    root = resolve_data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {root} is not a directory")
    return preprocess(loaders[name](root, download, quiet), subtract_mean)


def subtract_training_mean(x_train, x_val):
    """``(x_train - mean, x_val - mean)``: the per-pixel mean of ``x_train`` taken in
    float64 and cast to float32 first, as the original code did."""
    mean = np.asarray(x_train).mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.asarray(x_train, np.float32) - mean, np.asarray(x_val, np.float32) - mean


def preprocess(dataset, subtract_mean=None):
    """``dataset`` with the training mean subtracted (:func:`subtract_training_mean`)
    or not, as ``subtract_mean`` says (None: the dataset's legacy choice, see
    :data:`experiments.setup_keys.LEGACY_SUBTRACT_MEAN`).

    A dataset whose ``mean_subtracted`` is None (made by hand) is taken as it is; one
    already subtracted cannot be asked for without the subtraction (``ValueError``).
    """
    from experiments.config.setup_keys import legacy
    want = legacy("subtract_mean", dataset.name) if subtract_mean is None else subtract_mean
    if dataset.mean_subtracted is None or bool(dataset.mean_subtracted) == bool(want):
        return dataset
    if not want:
        raise ValueError(f"the {dataset.name} images given have the training mean "
                         f"subtracted; load them with subtract_mean=False")
    x_train, x_val = subtract_training_mean(dataset.x_train, dataset.x_val)
    return dataclasses.replace(dataset, x_train=x_train, x_val=x_val, mean_subtracted=True)


def subset(dataset, train_subset=None, val_subset=None):
    """A shallow copy of ``dataset`` keeping the first ``train_subset`` training and
    ``val_subset`` validation examples (``None``: all)."""
    out = copy.copy(dataset)
    for part, n in (("train", train_subset), ("val", val_subset)):
        if n is not None:
            available = len(getattr(dataset, f"y_{part}"))
            if not 1 <= int(n) <= available:
                raise ValueError(f"{part}_subset must be in 1..{available}, got {n!r}")
            setattr(out, f"x_{part}", getattr(dataset, f"x_{part}")[:int(n)])
            setattr(out, f"y_{part}", getattr(dataset, f"y_{part}")[:int(n)])
    return out


def epoch_batches(seed, epoch, n_train, batch_size=128, flip=False):
    """The training batches of one epoch: example indices and flip masks.

    Everything is drawn from ``np.random.default_rng([seed, 1, epoch])`` in this
    order: a permutation of ``range(n_train)``; then, to fill up the last incomplete
    batch, examples drawn uniformly (with replacement) from all ``n_train``; then, if
    ``flip``, one fair coin per example. So every batch has exactly ``batch_size``
    examples (50,000 -> 391 batches), and an epoch is reproducible from
    ``(seed, epoch)`` alone, e.g. after a resume.

    Returns
    -------
    indices : int32 array (n_batches, batch_size)
    flips : bool array of the same shape, or None if not ``flip``
    """
    for label, value, low in (("seed", seed, 0), ("epoch", epoch, 0),
                              ("n_train", n_train, 1), ("batch_size", batch_size, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    n_train, batch_size = int(n_train), int(batch_size)
    rng = np.random.default_rng([int(seed), 1, int(epoch)])
    n_batches = -(-n_train // batch_size)
    order = rng.permutation(n_train)
    fill = rng.integers(0, n_train, size=n_batches * batch_size - n_train)
    indices = np.concatenate([order, fill]).astype(np.int32).reshape(n_batches, batch_size)
    flips = rng.random(indices.shape) < 0.5 if flip else None
    return indices, flips


def flip_images(x, flips):
    """Reference augmentation: flip ``x[i]`` left-right (last axis) where ``flips[i]``."""
    x = np.asarray(x)
    flips = np.asarray(flips, dtype=bool).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(flips, x[..., ::-1], x)


# -- MNIST ----------------------------------------------------------------------------

def _load_mnist(root, download, quiet):
    images = _read_idx(_mnist_file(root, "train-images-idx3-ubyte", download, quiet),
                       (60000, 28, 28))
    labels_path = _mnist_file(root, "train-labels-idx1-ubyte", download, quiet)
    labels = _read_idx(labels_path, (60000,))
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{labels_path}: label {labels[bad]} at index {bad} is outside 0..9")
    x = images.reshape(-1, 1, 28, 28).astype(np.float32)
    x /= np.float32(256)
    y = labels.astype(np.int32)
    return Dataset("mnist", x[:50000], y[:50000], x[50000:], y[50000:], flip=False,
                   mean_subtracted=False)


def _mnist_file(root, name, download, quiet):
    """Path of a local copy (uncompressed or .gz, in root/mnist or root), else download."""
    for folder in (root / "mnist", root):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    target = root / "mnist" / (name + ".gz")
    where = f"MNIST file {target.name} not found in {target.parent}"
    if not download:
        raise DataError(f"{where} (downloads disabled); {HINT}")
    mirrors = os.environ.get("AMSGRAD_MNIST_MIRRORS", "").replace(",", " ").split()
    urls = [base.rstrip("/") + "/" + target.name for base in mirrors or MNIST_MIRRORS]
    expected = MNIST_MD5[name]

    def verify(path):
        try:
            digest = dl.md5sum(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, zlib.error) as e:
            return f"not a valid gzip file ({dl.one_line(e)})"
        if digest != expected:
            return f"md5 of the uncompressed data is {digest}, expected {expected}"
        return None

    try:
        return dl.fetch(urls, target, verify=verify, quiet=quiet)
    except dl.DownloadError as e:
        raise DataError(f"{where} and the download failed: {e}; {HINT}") from None


def _read_idx(path, shape):
    """The uint8 array of an IDX file (gzip or not), checked against ``shape``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {dl.one_line(e)}") from None
    ndim = len(shape)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"{path} is not an IDX file of unsigned bytes with {ndim} "
                        f"dimension(s) (magic number {raw[:4].hex() or 'missing'}, "
                        f"expected 000008{ndim:02x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: the IDX header is incomplete")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    if dims != shape:
        raise DataError(f"{path} holds an array of shape {dims}, expected {shape}")
    size = header + int(np.prod(shape))
    if len(raw) != size:
        problem = "is truncated" if len(raw) < size else "has trailing bytes"
        raise DataError(f"{path} {problem}: {len(raw)} bytes, expected {size}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


# -- CIFAR-10 -------------------------------------------------------------------------

def _load_cifar10(root, download, quiet):
    folder = cifar10_folder(root, download, quiet)
    parts = [_read_cifar_batch(folder / name) for name in CIFAR10_BATCHES]
    for split, batches, count in (("training", parts[:5], 50000), ("test", parts[5:], 10000)):
        total = sum(len(y) for _, y in batches)
        if total != count:
            raise DataError(f"{folder} holds {total} {split} images, expected {count}")
    x_train = _cifar_pixels(np.concatenate([x for x, _ in parts[:5]]))
    y_train = np.concatenate([y for _, y in parts[:5]])
    x_val, y_val = _cifar_pixels(parts[5][0]), parts[5][1]
    return Dataset("cifar10", x_train, y_train, x_val, y_val, flip=True, mean_subtracted=False)


def _cifar_pixels(data):
    x = data.reshape(-1, 3, 32, 32).astype(np.float32)
    x /= np.float32(255)
    return x


def cifar10_folder(root, download=True, quiet=False):
    """``root/cifar-10-batches-py`` (or ``root`` itself if it holds the batches),
    extracted from a local or downloaded (verified) archive if missing."""
    for folder in (root / CIFAR10_FOLDER, root):
        if all((folder / name).is_file() for name in CIFAR10_BATCHES):
            return folder
    folder = root / CIFAR10_FOLDER
    if folder.exists():  # never overwrite a directory the user made
        missing = next(n for n in CIFAR10_BATCHES if not (folder / n).is_file())
        raise DataError(f"CIFAR-10 file {folder / missing} is missing; complete or remove "
                        f"{folder}, or {HINT}")
    archive = root / CIFAR10_ARCHIVE
    if archive.is_file():
        problem = _verify_cifar_archive(archive)
        if problem:
            raise DataError(f"{archive}: {problem}")
    elif not download:
        raise DataError(f"CIFAR-10 folder {folder} not found and no {CIFAR10_ARCHIVE} in "
                        f"{root} (downloads disabled); {HINT}")
    else:
        url = os.environ.get("AMSGRAD_CIFAR10_URL") or CIFAR10_URL
        try:
            dl.fetch([url], archive, verify=_verify_cifar_archive, quiet=quiet)
        except dl.DownloadError as e:
            raise DataError(f"CIFAR-10 folder {folder} not found and the download failed: "
                            f"{e}; {HINT}") from None
    try:
        dl.extract_folder(archive, CIFAR10_FOLDER, root, required=CIFAR10_BATCHES)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot extract {archive} into {root}: {dl.one_line(e)}") from None
    return folder


def _verify_cifar_archive(path):
    if CIFAR10_MD5 is None:
        return None
    digest = dl.md5sum(path)
    return None if digest == CIFAR10_MD5 else f"md5 {digest} is not the official {CIFAR10_MD5}"


try:  # where numpy keeps the array unpickling helpers (moved in numpy 2)
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

# A batch is a pickle: only arrays, and never code, may come out of it. Mapping the
# names by hand also reads files written under numpy 1 (numpy.core) and 2 (numpy._core).
_PICKLE_GLOBALS = {"_reconstruct": _multiarray._reconstruct, "scalar": _multiarray.scalar,
                   "ndarray": np.ndarray, "dtype": np.dtype}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") \
                and name in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[name]
        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3, protocol < 3
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path):
    """(uint8 data (n, 3072), int32 labels (n,)) of one batch file, checked."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()  # Python 2 pickles
    except Exception as e:  # a damaged pickle can fail in many ways; all mean the same
        raise DataError(f"cannot read CIFAR-10 batch {path}: {dl.one_line(e)}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (a dict with b'data' and b'labels')")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: b'labels' has shape {labels.shape}, expected "
                        f"{len(data)} integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.argmax((labels < 0) | (labels > 9)))
        raise DataError(f"{path}: label {int(labels[bad])} at index {bad} is outside 0..9")
    return data, labels.astype(np.int32)
