"""CIFAR-10 as the original experiments used it: the python version's five training
batches, the official test set as the validation set, pixels / 255, random left-right
flips by default. Whether the per-pixel training mean is subtracted is the setup's
``subtract_mean`` (the published runs did; the original code's last commit does not,
nor did this suite before the key existed, so that is its default here).

Read from ``<data_dir>/cifar-10-batches-py/`` (or ``<data_dir>``), else extracted from
``<data_dir>/cifar-10-python.tar.gz``, else downloaded (``$AMSGRAD_CIFAR10_URL``) and
checked against the official md5 before it is extracted.
"""
import os
import pickle
import tarfile
import zlib

import numpy as np

from experiments.data import download as dl
from experiments.data.loading import HINT, Dataset, DataError
from experiments.data.registry import DatasetEntry, register_dataset

__all__ = ["CIFAR10_URL", "CIFAR10_ARCHIVE", "CIFAR10_FOLDER", "CIFAR10_MD5", "CIFAR10_BATCHES",
           "load_cifar10", "cifar10_folder", "ENTRY"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
#: md5 of the official archive; ``None`` skips the check (for a home-made archive).
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def load_cifar10(root, download, quiet):
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
        if dl.is_local_fault(e):
            raise  # the folder's, not the archive's: said by load_dataset
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


ENTRY = register_dataset(DatasetEntry(
    "cifar10", load_cifar10, input_shape=(3, 32, 32), classes=10, augmentation="flip",
    subtract_mean=False, description="CIFAR-10: 50,000 training images, the official "
    "10,000 test images for validation", sizes=(50000, 10000)))
